package server

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"

	"github.com/stratamq/strata/dsd/storage"
)

// The REST API describes the (single, until replication) site and its one
// durable storage, "messages", in the shapes EMQX's /api/v5/ds endpoints use,
// so dashboards and scripts written for those work here.
const dsName = "messages"

type restAPI struct {
	db   *storage.DB
	node string
}

func newRESTAPI(db *storage.DB) *restAPI {
	node, err := os.Hostname()
	if err != nil {
		node = "unknown"
	}
	return &restAPI{db: db, node: node}
}

// register mounts the endpoints under /ds and /api/v5/ds.
func (a *restAPI) register(mux *http.ServeMux) {
	for _, prefix := range []string{"/ds", "/api/v5/ds"} {
		mux.HandleFunc("GET "+prefix+"/sites", a.sites)
		mux.HandleFunc("GET "+prefix+"/sites/{site}", a.site)
		mux.HandleFunc("GET "+prefix+"/storages", a.storages)
		mux.HandleFunc("GET "+prefix+"/storages/{ds}", a.storage)
	}
}

type siteShardJSON struct {
	Storage string `json:"storage"`
	ID      string `json:"id"`
	Status  string `json:"status"`
}

type siteJSON struct {
	Site   string          `json:"site"`
	Node   string          `json:"node"`
	Up     bool            `json:"up"`
	Shards []siteShardJSON `json:"shards"`
}

type replicaJSON struct {
	Site   string `json:"site"`
	Status string `json:"status"`
}

type storageShardJSON struct {
	ID                string        `json:"id"`
	Replicas          []replicaJSON `json:"replicas"`
	Transitions       []any         `json:"transitions"`
	CurrentGeneration uint64        `json:"current_generation"`
	Generations       int           `json:"generations"`
	ReadableClockUs   int64         `json:"readable_clock_us"`
}

type storageJSON struct {
	Name   string             `json:"name"`
	Shards []storageShardJSON `json:"shards"`
}

func (a *restAPI) sites(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []string{a.db.SiteID()})
}

func (a *restAPI) site(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("site") != a.db.SiteID() {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "site not found")
		return
	}
	out := siteJSON{Site: a.db.SiteID(), Node: a.node, Up: true, Shards: []siteShardJSON{}}
	for shard := range a.db.NShards() {
		out.Shards = append(out.Shards, siteShardJSON{Storage: dsName, ID: strconv.Itoa(shard), Status: "up"})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *restAPI) storages(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []string{dsName})
}

func (a *restAPI) storage(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("ds") != dsName {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "durable storage not found")
		return
	}
	out := storageJSON{Name: dsName, Shards: []storageShardJSON{}}
	for shard := range a.db.NShards() {
		gens := a.db.Generations(shard)
		s := storageShardJSON{
			ID:              strconv.Itoa(shard),
			Replicas:        []replicaJSON{{Site: a.db.SiteID(), Status: "up"}},
			Transitions:     []any{},
			Generations:     len(gens),
			ReadableClockUs: a.db.ReadableClock(shard),
		}
		if len(gens) > 0 {
			s.CurrentGeneration = gens[len(gens)-1].GetId()
		}
		out.Shards = append(out.Shards, s)
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]string{"code": errCode, "message": msg})
}
