// Package sitelink is the transport between sites: one multiplexed gRPC
// stream (SiteService.Link, on dsd's gRPC port) per pair of sites, carrying
// the raft messages of every group, each tagged with its group id, in
// batches per destination.
//
// The site with the smaller id dials and the other accepts, so a pair
// never races to two streams. Each side's first message is a hello
// naming its site and address. Then both directions carry batches: every
// peer has one bounded queue and one sender goroutine, which takes what
// is queued (up to MaxBatch messages or MaxBatchBytes) and sends it as one
// gRPC message. A full queue, or a peer without a link for longer than
// DownGrace, drops the message and Send reports it: raft retransmits, and
// its caller reports the peer unreachable.
//
// LastHeard tells when anything last arrived from a peer, and Connected
// whether a stream to it is up (the metadata group's liveness counts the
// raft messages it is delivered itself).
//
// Goroutines: one sender per known peer (and, on the dialing side, one
// receiver per stream); the accepting side receives in the gRPC handler.
// Close stops them all and waits.
package sitelink
