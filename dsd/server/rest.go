package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"

	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/meta"
	"github.com/stratamq/strata/dsd/storage"
	clusterv1 "github.com/stratamq/strata/gen/strata/cluster/v1"
)

// The REST API describes the sites of the cluster and the one durable
// storage, "messages", in the shapes EMQX's /api/v5/ds endpoints use, so
// dashboards and scripts written for those work here. Sites, replicas and
// transitions come from the metadata group as this site applied it;
// generations and clocks are this site's. The replica site list is changed
// with PUT and DELETE (the admin role with mTLS, as AdminService).
const dsName = "messages"

type restAPI struct {
	db      *storage.DB
	cluster *cluster.Cluster
	auth    *authorizer
	node    string
}

func newRESTAPI(db *storage.DB, c *cluster.Cluster, auth *authorizer) *restAPI {
	node, err := os.Hostname()
	if err != nil {
		node = "unknown"
	}
	return &restAPI{db: db, cluster: c, auth: auth, node: node}
}

// register mounts the endpoints under /ds and /api/v5/ds.
func (a *restAPI) register(mux *http.ServeMux) {
	for _, prefix := range []string{"/ds", "/api/v5/ds"} {
		mux.HandleFunc("GET "+prefix+"/sites", a.sites)
		mux.HandleFunc("GET "+prefix+"/sites/{site}", a.site)
		mux.HandleFunc("GET "+prefix+"/storages", a.storages)
		mux.HandleFunc("GET "+prefix+"/storages/{ds}", a.storage)
		mux.HandleFunc("GET "+prefix+"/storages/{ds}/replicas", a.replicaSites)
		mux.HandleFunc("PUT "+prefix+"/storages/{ds}/replicas", a.setReplicas)
		mux.HandleFunc("PUT "+prefix+"/storages/{ds}/replicas/{site}", a.joinSite)
		mux.HandleFunc("DELETE "+prefix+"/storages/{ds}/replicas/{site}", a.leaveSite)
	}
}

type siteShardJSON struct {
	Storage string `json:"storage"`
	ID      string `json:"id"`
	Status  string `json:"status"`
}

type siteJSON struct {
	Site    string          `json:"site"`
	Node    string          `json:"node"`
	Address string          `json:"address,omitempty"`
	Up      bool            `json:"up"`
	Shards  []siteShardJSON `json:"shards"`
}

type replicaJSON struct {
	Site   string `json:"site"`
	Status string `json:"status"`
}

type transitionJSON struct {
	Site       string `json:"site"`
	Transition string `json:"transition"` // "add" or "del"
	ClaimedBy  string `json:"claimed_by,omitempty"`
}

type storageShardJSON struct {
	ID                string           `json:"id"`
	Replicas          []replicaJSON    `json:"replicas"`
	Transitions       []transitionJSON `json:"transitions"`
	CurrentGeneration uint64           `json:"current_generation"`
	Generations       int              `json:"generations"`
	ReadableClockUs   int64            `json:"readable_clock_us"`
}

type storageJSON struct {
	Name   string             `json:"name"`
	Shards []storageShardJSON `json:"shards"`
}

func (a *restAPI) sites(w http.ResponseWriter, r *http.Request) {
	if a.cluster == nil {
		writeJSON(w, http.StatusOK, []string{a.db.SiteID()})
		return
	}
	ids := []string{}
	for _, s := range a.cluster.State().GetSites() {
		ids = append(ids, s.GetId())
	}
	writeJSON(w, http.StatusOK, ids)
}

func (a *restAPI) site(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("site")
	if a.cluster == nil {
		if id != a.db.SiteID() {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "site not found")
			return
		}
		out := siteJSON{Site: a.db.SiteID(), Node: a.node, Up: true, Shards: []siteShardJSON{}}
		for shard := range a.db.NShards() {
			out.Shards = append(out.Shards, siteShardJSON{Storage: dsName, ID: strconv.Itoa(shard), Status: "up"})
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	st := a.cluster.State()
	var out *siteJSON
	for _, s := range st.GetSites() {
		if s.GetId() == id {
			out = &siteJSON{Site: id, Node: s.GetNode(), Address: s.GetAddress(), Up: s.GetUp(), Shards: []siteShardJSON{}}
		}
	}
	if out == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "site not found")
		return
	}
	// A shard is this site's when it holds a replica ("up") or one is
	// being added to it ("joining"); a replica being removed is "leaving".
	for _, sp := range st.GetMessages().GetShards() {
		status := ""
		if slices.Contains(sp.GetReplicas(), id) {
			status = "up"
		}
		for _, t := range sp.GetTransitions() {
			if t.GetSite() != id {
				continue
			}
			if t.GetOp() == clusterv1.TransitionOp_TRANSITION_OP_ADD {
				status = "joining"
			} else {
				status = "leaving"
			}
			break
		}
		if status != "" {
			out.Shards = append(out.Shards, siteShardJSON{Storage: dsName, ID: strconv.Itoa(int(sp.GetShard())), Status: status})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// replicas is a shard's replica list and transitions for the storage
// endpoint: from the metadata group, or this site alone without one.
func (a *restAPI) replicas(shard int) ([]replicaJSON, []transitionJSON) {
	if a.cluster == nil {
		return []replicaJSON{{Site: a.db.SiteID(), Status: "up"}}, []transitionJSON{}
	}
	st := a.cluster.State()
	up := map[string]bool{}
	for _, s := range st.GetSites() {
		up[s.GetId()] = s.GetUp()
	}
	reps, trs := []replicaJSON{}, []transitionJSON{}
	shards := st.GetMessages().GetShards()
	if shard >= len(shards) {
		return reps, trs // not allocated yet
	}
	for _, site := range shards[shard].GetReplicas() {
		status := "up"
		if !up[site] {
			status = "down"
		}
		reps = append(reps, replicaJSON{Site: site, Status: status})
	}
	for _, t := range shards[shard].GetTransitions() {
		op := "add"
		if t.GetOp() == clusterv1.TransitionOp_TRANSITION_OP_DEL {
			op = "del"
		}
		trs = append(trs, transitionJSON{Site: t.GetSite(), Transition: op, ClaimedBy: t.GetClaimedBy()})
	}
	return reps, trs
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
		reps, trs := a.replicas(shard)
		s := storageShardJSON{
			ID:              strconv.Itoa(shard),
			Replicas:        reps,
			Transitions:     trs,
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

// replicaSites is the storage's replica site list: every site that holds
// or is to hold a replica of a shard (the list set-replicas sets and join
// and leave change).
func (a *restAPI) replicaSites(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("ds") != dsName {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "durable storage not found")
		return
	}
	if a.cluster == nil {
		writeJSON(w, http.StatusOK, []string{a.db.SiteID()})
		return
	}
	writeJSON(w, http.StatusOK, append([]string{}, a.cluster.ReplicaSites()...))
}

// maxReplicasBody bounds a PUT of the replica site list.
const maxReplicasBody = 64 << 10

// setReplicas sets the replica site list (set-replicas): the body is a
// JSON array of site ids.
func (a *restAPI) setReplicas(w http.ResponseWriter, r *http.Request) {
	var sites []string
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReplicasBody)).Decode(&sites); err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "the body must be a JSON array of site ids: "+err.Error())
		return
	}
	a.changeReplicas(w, r, func(ctx context.Context) error { return a.cluster.SetReplicas(ctx, sites) })
}

// joinSite adds a site to the replica site list (join).
func (a *restAPI) joinSite(w http.ResponseWriter, r *http.Request) {
	site := r.PathValue("site")
	a.changeReplicas(w, r, func(ctx context.Context) error { return a.cluster.AddReplicaSite(ctx, site) })
}

// leaveSite removes a site from the replica site list (leave).
func (a *restAPI) leaveSite(w http.ResponseWriter, r *http.Request) {
	site := r.PathValue("site")
	a.changeReplicas(w, r, func(ctx context.Context) error { return a.cluster.RemoveReplicaSite(ctx, site) })
}

// changeReplicas runs change for an admin and answers the replica site
// list once it is applied.
func (a *restAPI) changeReplicas(w http.ResponseWriter, r *http.Request, change func(context.Context) error) {
	if r.PathValue("ds") != dsName {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "durable storage not found")
		return
	}
	if !a.admin(w, r) {
		return
	}
	if a.cluster == nil {
		writeError(w, http.StatusNotImplemented, "NOT_IMPLEMENTED", errNoCluster.Error())
		return
	}
	if err := change(r.Context()); err != nil {
		code, name := http.StatusInternalServerError, "INTERNAL_ERROR"
		switch {
		case errors.Is(err, cluster.ErrNoSites), errors.Is(err, meta.ErrBadSiteID):
			code, name = http.StatusBadRequest, "BAD_REQUEST"
		case errors.Is(err, cluster.ErrNotReplicaSite):
			code, name = http.StatusNotFound, "NOT_FOUND"
		case errors.Is(err, meta.ErrNotAllocated), errors.Is(err, cluster.ErrNotRunning), errors.Is(err, context.DeadlineExceeded):
			code, name = http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE"
		}
		writeError(w, code, name, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, append([]string{}, a.cluster.ReplicaSites()...))
}

// admin reports whether the caller may change the replica sites: any
// caller without mutual TLS (dsd listens in plaintext only on loopback or
// with unsafe_plaintext_listen), else a client certificate of the admin
// role. It answers the refusal itself.
func (a *restAPI) admin(w http.ResponseWriter, r *http.Request) bool {
	if a.auth == nil || !a.auth.mutual {
		return true
	}
	var chains [][]*x509.Certificate
	if r.TLS != nil {
		chains = r.TLS.VerifiedChains
	}
	c, err := a.auth.callerOf(chains)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "a verified client certificate is required")
		return false
	}
	if c.role != RoleAdmin {
		writeError(w, http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("changing the replica sites needs the admin role; %q has %q", c.name, c.role))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]string{"code": errCode, "message": msg})
}
