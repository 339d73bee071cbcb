// Package seek finds, for feedback waiting on a replica, the spans that
// replica never indexed: in the index replicas share on Redis
// (pkg/sharedindex), or, with no shared index or when it misses too, in
// Phoenix itself.
//
// Feedback reaches whichever replica the load balancer picks; the span went
// through the sidecar of the replica that served the answer. A Seeker
// looks each waiting response id up on a schedule of its own per source:
//
//   - the shared index: at once (SubmitAndWait asks it before it takes the
//     feedback, see Seeker.Find), again whenever the subscription to
//     other replicas' announcements (re)connects, and on a backoff from
//     1 s to 1 min, because announcements are at most once;
//   - Phoenix: from 5 s after the feedback arrived (the span needs the
//     app's batch delay and Phoenix's asynchronous ingest to show up),
//     then 3x further apart, six times in all (up to 10 min after); from
//     30 s, four times, behind a shared index, which finds at once what
//     other replicas indexed. Every request to Phoenix is drawn from one
//     token bucket (PhoenixConfig.Rate), ids asked about least first, so
//     that feedback for made-up ids cannot turn into load on Phoenix nor
//     hold back real feedback.
//
// What it finds it adds to the replica's own index and tells the feedback
// service (Seeker's learn function), exactly as if the span had come
// through this replica.
package seek
