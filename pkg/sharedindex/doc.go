// Package sharedindex shares the response-id index between replicas of the
// proxy, on Redis or Valkey.
//
// With one replica, the span of a response and the feedback on it meet in
// one process. Behind a load balancer they do not: the app's replica A
// exports the span through its sidecar, the user's vote comes back through
// replica B. Every replica writes the entries its own index takes to the
// shared one ([Index.Put]), and reads it when its own misses ([Index.Find]);
// a replica holding feedback that arrived before its span is told the
// moment any replica indexes it ([Index.Start]'s onIndexed).
//
// # Keys and messages
//
// One string key a response id, "fbp:r:" + the id, whose value is the span
// (see encode) and whose TTL is what is left of the index's max age, so
// that Redis forgets an entry when every replica's own index would.
// Writing an entry also publishes it on the channel "fbp:indexed" ("value
// \n id"), so that no replica has to poll for it; pub/sub is at most once,
// which is why a replica also reads the keys of the feedback it holds again
// after every reconnection, and on a backoff until they resolve (see
// pkg/seek).
//
// # Innermost span wins, across replicas
//
// A write is a Lua script, atomic on the server: it keeps the span already
// stored when both belong to one trace and the stored one is the inner (the
// new span is its parent, or started earlier), the rule pkg/index applies
// within one replica. So an outer span that copied the id, exported by
// another replica or later, never takes over from the LLM span, in any
// order of arrival. Of two spans of different traces (an id used again),
// the one that started later is kept, so that a backlog written after an
// outage does not undo a newer use.
//
// # Redis down or slow
//
// The export path never waits for Redis: Put only appends to a local
// backlog, bounded in entries, that a writer drains in pipelines of up to
// 256 scripts. While Redis is unreachable the backlog keeps the entries (and
// every replica's own index keeps resolving what it saw); past its bound
// the oldest are dropped from the backlog, counted and logged, and stay in
// the local index. Every call has a timeout.
package sharedindex
