// Command dsd is Strata's durable storage daemon: it stores messages in
// Pebble under one data directory and serves them over gRPC.
//
//	dsd --config strata.toml --data-dir data --grpc-listen 127.0.0.1:7070 --http-listen 127.0.0.1:7071
//
// Flags override the config file. dsd prints its effective configuration at
// start-up and stops gracefully on SIGINT or SIGTERM.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/dsd/cluster"
	"github.com/stratamq/strata/dsd/server"
	"github.com/stratamq/strata/dsd/storage"
	"github.com/stratamq/strata/internal/buildinfo"
	"github.com/stratamq/strata/internal/logging"
	"github.com/stratamq/strata/internal/profiling"
	"github.com/stratamq/strata/internal/sdnotify"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dsd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("dsd", flag.ContinueOnError)
	configPath := fs.String("config", "", "TOML config file (default: built-in defaults)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	dataDir := fs.String("data-dir", "", "data directory (overrides durable_storage.messages.data_dir)")
	grpcListen := fs.String("grpc-listen", "", "gRPC listen address (overrides dsd.grpc_listen)")
	httpListen := fs.String("http-listen", "", "HTTP listen address (overrides dsd.http_listen)")
	join := fs.String("join", "", "gRPC address of a site of the cluster to join at the first start (overrides dsd.join)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	pprofHTTP := fs.Bool("pprof", false, "serve /debug/pprof/ (heap, goroutine and CPU profiles) on the HTTP listener; off by default")
	showVersion := buildinfo.VersionFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		buildinfo.Fprint(os.Stdout, "dsd")
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	stopProfile, err := profiling.StartCPU(*cpuProfile)
	if err != nil {
		return err
	}
	defer func() { _ = stopProfile() }()
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DurableStorage.Messages.DataDir = *dataDir
	}
	if *grpcListen != "" {
		cfg.DSD.GRPCListen = *grpcListen
	}
	if *httpListen != "" {
		cfg.DSD.HTTPListen = *httpListen
	}
	if *join != "" {
		cfg.DSD.Join = *join
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, *logLevel)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "# dsd effective configuration\n%s", cfg)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	db, err := storage.Open(storageOptions(cfg, log))
	if err != nil {
		return err
	}
	t := cfg.DSD.TLS
	tlsConfig, err := server.LoadTLS(server.TLSFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, CACertFile: t.CACertFile})
	if err != nil {
		return errors.Join(err, db.Close())
	}
	roles := make(map[string]server.Role, len(t.Roles))
	for name, role := range t.Roles {
		roles[name] = server.Role(role)
	}
	copts, err := clusterOptions(cfg, db.SiteID(), log)
	if err != nil {
		return errors.Join(err, db.Close())
	}
	copts.Shards = server.ShardMachine(db)
	// A raft message between sites carries one entry at most this large
	// (plus its framing) and must pass the other sites' receive limit.
	copts.MaxEntryBytes = maxRecvMsgSize(cfg) - 16<<10
	member, err := cluster.New(db.Engine(), copts)
	if err != nil {
		return errors.Join(err, db.Close())
	}
	srv, err := server.Listen(db, server.Options{
		Cluster:                    member,
		SiteDialOptions:            copts.DialOptions,
		GRPCListen:                 cfg.DSD.GRPCListen,
		HTTPListen:                 cfg.DSD.HTTPListen,
		MaxRecvMsgSize:             maxRecvMsgSize(cfg),
		MaxConcurrentStreams:       uint32(cfg.DSD.MaxConcurrentStreams),
		UnsafePlaintextListen:      cfg.UnsafePlaintextListen,
		TLS:                        tlsConfig,
		Roles:                      roles,
		DefaultRole:                server.Role(t.DefaultRole),
		AllowCrossIdentityTakeover: cfg.MQTT.AllowCrossIdentityTakeover,
		Logger:                     log,
		Pprof:                      *pprofHTTP,
		GatewayLink: server.GatewayLinkOptions{
			BatchSize:            cfg.DurableSessions.BatchSize,
			IdlePollInterval:     cfg.DurableSessions.IdlePollInterval.Std(),
			RenewStreamsInterval: cfg.DurableSessions.RenewStreamsInterval.Std(),
			HeartbeatInterval:    cfg.DurableSessions.GatewayHeartbeatInterval.Std(),
			MaxEntries:           cfg.DurableSessions.MaxLinkEntries,
		},
	})
	if err != nil {
		return errors.Join(err, db.Close())
	}
	advertise := cmp.Or(cfg.DSD.AdvertiseAddress, srv.GRPCAddr())
	member.Start(advertise)
	log.Info("dsd ready", "site", db.SiteID(), "shards", db.NShards(), "grpc", srv.GRPCAddr(), "http", srv.HTTPAddr(), "data_dir", cfg.DurableStorage.Messages.DataDir)
	if err := sdnotify.Ready(); err != nil {
		log.Warn("cannot tell systemd that dsd is ready", "err", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	var serveErr error
	select {
	case serveErr = <-served: // a listener failed; Serve closed the server
		log.Info("dsd stopping", "err", serveErr)
		_ = sdnotify.Stopping()
	case <-ctx.Done():
		log.Info("dsd stopping")
		_ = sdnotify.Stopping()
		// The site links are streams that never end on their own: the
		// member stops first, which ends them, so the graceful stop does
		// not wait them out.
		member.Close()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("calls still in flight were cut", "after", shutdownTimeout, "err", err)
		}
		cancel()
		serveErr = <-served
	}
	// The metadata group shares the engine: stop it before the engine.
	member.Close()
	return errors.Join(serveErr, db.Close())
}

// clusterOptions are the metadata group's options: this site, the join
// address, the allocation keys, and TLS between sites when dsd has TLS.
func clusterOptions(cfg config.Config, site string, log *slog.Logger) (cluster.Options, error) {
	m := cfg.DurableStorage.Messages
	node, err := os.Hostname()
	if err != nil {
		node = "unknown"
	}
	if m.ReplicationFactor > m.NSites && (m.NSites > 1 || cfg.DSD.Join != "") {
		log.Warn("replication_factor is more than n_sites: each shard gets min(sites, replication_factor) replicas of the sites known at its allocation",
			"replication_factor", m.ReplicationFactor, "n_sites", m.NSites)
	}
	dial, err := siteDialOptions(cfg.DSD.TLS)
	if err != nil {
		return cluster.Options{}, err
	}
	return cluster.Options{
		Site: site, Node: node, Join: cfg.DSD.Join,
		NShards: m.NShards, NSites: m.NSites, ReplicationFactor: m.ReplicationFactor,
		DialOptions: dial,
		Logger:      log,
	}, nil
}

// maxRecvMsgSize is the gRPC receive limit: the largest MQTT message plus
// a request's slack.
func maxRecvMsgSize(cfg config.Config) int { return int(cfg.MQTT.MaxPacketSize) + 64<<10 }

// shutdownTimeout is how long a stopping dsd lets in-flight calls finish.
const shutdownTimeout = 10 * time.Second

func storageOptions(cfg config.Config, log *slog.Logger) storage.Options {
	m := cfg.DurableStorage.Messages
	return storage.Options{
		DataDir: m.DataDir,
		NShards: m.NShards,
		Layout: storage.LayoutConfig{
			Type:               m.Layout.Type,
			BitsPerTopicLevel:  m.Layout.BitsPerTopicLevel,
			EpochBits:          m.Layout.EpochBits,
			TopicIndexBytes:    m.Layout.TopicIndexBytes,
			WildcardThresholds: m.Layout.WildcardThresholds,
			MaxTrieStates:      m.Layout.MaxTrieStates,
		},
		BufferMaxItems:    m.LocalWriteBuffer.MaxItems,
		BufferMaxBytes:    int(m.LocalWriteBuffer.MaxBytes),
		FlushInterval:     m.LocalWriteBuffer.FlushInterval.Std(),
		RetentionPeriod:   cfg.DurableSessions.MessageRetentionPeriod.Std(),
		MaxClockSkew:      cfg.MaxClockSkew.Std(),
		SessionGCInterval: cfg.DurableSessions.SessionGCInterval.Std(),
		UnsafeNoSync:      cfg.UnsafeNoSync,
		MaxMessageBytes:   int(cfg.MQTT.MaxPacketSize),
		Logger:            log,
		// 0 in the config turns these off; 0 in Options means the default.
		MinFreeBytes:          offIfZero(int64(m.MinFreeBytes)),
		DiskCheckInterval:     m.DiskCheckInterval.Std(),
		EmergencyBallastBytes: offIfZero(int64(m.EmergencyBallastBytes)),
		TailCacheBytes:        int(offIfZero(int64(m.TailCacheBytes))),
	}
}

// offIfZero maps a config size whose 0 means "off" to storage.Options,
// where 0 means "the default" and a negative value "off".
func offIfZero(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
