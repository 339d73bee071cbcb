package sharedindex

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/redistest"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// Benchmarks against a real redis-server (internal/redistest), configured
// as deploy/ runs Valkey: append-only file, fsync every second (redistest
// fsyncs every write, which would measure the disk). Not run by go test
// without -bench. See docs/benchmarks.md, "Shared index (Redis)".

// benchRedis starts a redis-server for a benchmark, with the deployment's
// durability, and a go-redis client on it to read INFO.
func benchRedis(b *testing.B) (*redistest.Server, *redis.Client) {
	b.Helper()
	srv := redistest.Start(b)
	if got := srv.Do("CONFIG", "SET", "appendfsync", "everysec"); got != "+OK" {
		b.Fatalf("CONFIG SET appendfsync: %s", got)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	b.Cleanup(func() { _ = rdb.Close() })
	return srv, rdb
}

// newBenchIndex is newIndex for a benchmark: the shared index of one
// replica, started (writing, and subscribed as every replica is). Its
// announcements, one per entry written, come on the channel.
func newBenchIndex(b *testing.B, url string) (*Index, chan string) {
	b.Helper()
	s, err := New(Config{URL: url, MaxAge: 24 * time.Hour}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	announced := make(chan string, 1<<16)
	subscribed := make(chan struct{}, 1)
	s.Start(func(e index.Entry) { announced <- e.ResponseID }, func() {
		select {
		case subscribed <- struct{}{}:
		default:
		}
	})
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		b.Fatal("not subscribed within 10 s")
	}
	return s, announced
}

// awaitWritten waits until n entries Put were written: their announcements
// came back (so Redis ran the script, and its PUBLISH reached a
// subscriber), then the writer saw its pipeline answered. Polling with
// time.Sleep would measure the timer: a 20 µs sleep takes ~1 ms here.
func awaitWritten(b *testing.B, s *Index, announced <-chan string, n int) {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for range n {
		select {
		case <-announced:
		case <-t.C:
			b.Fatalf("not written in 30 s: backlog %d, %s", s.Backlog(), s.Degraded())
		}
	}
	for s.Backlog() > 0 {
		runtime.Gosched()
	}
}

// awaitAnnounced waits for one entry to be announced.
func awaitAnnounced(b *testing.B, s *Index, announced <-chan string) {
	select {
	case <-announced:
		return
	default:
	}
	select {
	case <-announced:
	case <-time.After(30 * time.Second):
		b.Fatalf("nothing written in 30 s: backlog %d, %s", s.Backlog(), s.Degraded())
	}
}

// entries makes LLM-like entries as an OpenAI app's spans give them: ids
// "chatcmpl-" + 29 characters and "resp_" + 48 hex digits, alternately; one
// trace each, the LLM span a child; project "default", "ChatCompletion".
// Each generator starts at its own place: an id written before, with the
// same span, would be kept by the script and not announced.
type entries struct{ n uint64 }

var generators atomic.Uint64

func newEntries() *entries { return &entries{n: generators.Add(1) << 40} }

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func (g *entries) next() index.Entry {
	g.n++
	h1, h2 := mix(g.n), mix(g.n^0x9e3779b97f4a7c15)
	var id string
	if g.n%2 == 0 {
		var b [9 + 29]byte
		copy(b[:], "chatcmpl-")
		x := h1
		for i := 9; i < len(b); i++ {
			if i == 9+10 || i == 9+20 {
				x = mix(x + uint64(i))
			}
			b[i] = alnum[x%62]
			x /= 62
		}
		id = string(b[:])
	} else {
		var raw [24]byte
		binary.LittleEndian.PutUint64(raw[0:], h1)
		binary.LittleEndian.PutUint64(raw[8:], h2)
		binary.LittleEndian.PutUint64(raw[16:], mix(h1+h2))
		id = "resp_" + hex.EncodeToString(raw[:])
	}
	var tr pcommon.TraceID
	binary.LittleEndian.PutUint64(tr[0:], h1)
	binary.LittleEndian.PutUint64(tr[8:], h2)
	var sp, parent pcommon.SpanID
	binary.LittleEndian.PutUint64(sp[:], mix(h2))
	binary.LittleEndian.PutUint64(parent[:], mix(h1))
	now := time.Now()
	return index.Entry{ResponseID: id, Span: index.Span{
		TraceID: tr, SpanID: sp, ParentID: parent, Project: "default", Name: "ChatCompletion",
		Start: pcommon.NewTimestampFromTime(now.Add(-2 * time.Second)), Seen: now,
	}}
}

func (g *entries) batch(n int) []index.Entry {
	out := make([]index.Entry, n)
	for i := range out {
		out[i] = g.next()
	}
	return out
}

// mix is splitmix64's finalizer: distinct, random-looking ids from a counter.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func TestBenchEntriesLookReal(t *testing.T) {
	g := newEntries()
	seen := map[string]bool{}
	for range 1000 {
		e := g.next()
		switch {
		case strings.HasPrefix(e.ResponseID, "chatcmpl-"):
			if len(e.ResponseID) != 9+29 {
				t.Fatalf("%q: want chatcmpl- and 29 characters", e.ResponseID)
			}
		case strings.HasPrefix(e.ResponseID, "resp_"):
			if len(e.ResponseID) != 5+48 {
				t.Fatalf("%q: want resp_ and 48 hex digits", e.ResponseID)
			}
		default:
			t.Fatalf("%q", e.ResponseID)
		}
		if seen[e.ResponseID] {
			t.Fatalf("%q twice", e.ResponseID)
		}
		seen[e.ResponseID] = true
	}
}

// BenchmarkPut: from Put to written in Redis and announced. batch=1 and
// batch=100 wait for each Put to be written before the next: the latency of
// a lone entry, and of a pipeline of 100. stream Puts one entry per
// iteration, as the export path does, holding at most 512 unwritten, so
// the writer pipelines what accumulates while a pipeline is out: the
// throughput of one replica's writer.
func BenchmarkPut(b *testing.B) {
	srv, _ := benchRedis(b)
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s, announced := newBenchIndex(b, srv.URL())
			g := newEntries()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				batch := g.batch(n)
				b.StartTimer()
				s.Put(batch)
				awaitWritten(b, s, announced, n)
			}
			reportPerEntry(b, b.N*n, b.Elapsed())
		})
	}
	b.Run("stream", func(b *testing.B) {
		s, announced := newBenchIndex(b, srv.URL())
		g := newEntries()
		outstanding := 0
		start := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			s.Put([]index.Entry{g.next()})
			outstanding++
			for outstanding >= 2*maxPipeline {
				awaitAnnounced(b, s, announced)
				outstanding--
			}
		}
		awaitWritten(b, s, announced, outstanding)
		reportPerEntry(b, b.N, time.Since(start))
	})
}

func reportPerEntry(b *testing.B, n int, el time.Duration) {
	if n == 0 || el == 0 {
		return
	}
	b.ReportMetric(float64(el.Microseconds())/float64(n), "µs/entry")
	b.ReportMetric(float64(n)/el.Seconds(), "entries/s")
}

// BenchmarkFind: the latency of one lookup (one MGET round trip) of 1 id
// that Redis holds, 1 it does not, and 100 it holds; p50 and p99 of the
// single operations besides the mean.
func BenchmarkFind(b *testing.B) {
	srv, _ := benchRedis(b)
	s, announced := newBenchIndex(b, srv.URL())
	g := newEntries()
	stored := g.batch(10_000)
	s.Put(stored)
	awaitWritten(b, s, announced, len(stored))
	ids := make([]string, len(stored))
	for i, e := range stored {
		ids[i] = e.ResponseID
	}
	missing := newEntries()
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		n    int
		hit  bool
	}{{"hit-1", 1, true}, {"miss-1", 1, false}, {"hit-100", 100, true}} {
		b.Run(tt.name, func(b *testing.B) {
			var lat []time.Duration
			i := 0
			q := make([]string, tt.n)
			b.ReportAllocs()
			for b.Loop() {
				for j := range q {
					if tt.hit {
						q[j] = ids[(i+j)%len(ids)]
					} else {
						q[j] = missing.next().ResponseID
					}
				}
				i += tt.n
				start := time.Now()
				got, err := s.Find(ctx, q)
				lat = append(lat, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				want := tt.n
				if !tt.hit {
					want = 0
				}
				if len(got) != want {
					b.Fatalf("found %d, want %d", len(got), want)
				}
			}
			reportPercentiles(b, lat)
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

// BenchmarkRedisLoadPer1000Spans: what indexing 1,000 LLM spans costs Redis,
// from its own counters (INFO stats, commandstats, memory, cpu) before and
// after: commands, read events (about one per round trip), bytes in and
// out, CPU, and the memory each entry holds. One op is 1,000 entries.
//
// burst Puts the 1,000 at once (the writer sends pipelines of up to 256):
// the load at high rates, when entries accumulate while a pipeline is out.
// one-by-one Puts one and waits until it is written: the load when LLM
// spans come apart (an LLM call takes seconds), one round trip each.
// The writer's replica is subscribed, as every replica is: bytes out
// include one announcement per entry to it, and grow with each replica.
func BenchmarkRedisLoadPer1000Spans(b *testing.B) {
	for _, mode := range []string{"burst", "one-by-one"} {
		b.Run(mode, func(b *testing.B) {
			srv, rdb := benchRedis(b)
			s, announced := newBenchIndex(b, srv.URL())
			g := newEntries()
			ctx := context.Background()
			// Warm up: the script loaded, the connections open, the
			// counters then read.
			s.Put(g.batch(10))
			awaitWritten(b, s, announced, 10)
			before := readInfo(b, rdb)
			keysBefore := rdb.DBSize(ctx).Val()
			pipes := 0
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				batch := g.batch(1000)
				b.StartTimer()
				if mode == "burst" {
					s.Put(batch)
					awaitWritten(b, s, announced, len(batch))
					pipes += (len(batch) + maxPipeline - 1) / maxPipeline
					continue
				}
				for i := range batch {
					s.Put(batch[i : i+1])
					awaitWritten(b, s, announced, 1)
				}
				pipes += len(batch)
			}
			after := readInfo(b, rdb)
			keys := rdb.DBSize(ctx).Val() - keysBefore
			if keys != int64(1000*b.N) {
				b.Fatalf("%d keys written, want %d", keys, 1000*b.N)
			}
			per := func(name string) float64 { return (after[name] - before[name]) / float64(b.N) }
			b.ReportMetric(per("cmdstat_evalsha"), "evalsha/1k")
			b.ReportMetric(per("total_commands_processed"), "commands/1k")
			b.ReportMetric(float64(pipes)/float64(b.N), "pipelines/1k")
			b.ReportMetric(per("total_reads_processed"), "reads/1k")
			b.ReportMetric(per("total_net_input_bytes"), "bytes-in/1k")
			b.ReportMetric(per("total_net_output_bytes"), "bytes-out/1k")
			b.ReportMetric(per("used_cpu")*1e6/1000, "redis-cpu-µs/entry")
			b.ReportMetric((after["used_memory"]-before["used_memory"])/float64(keys), "mem-B/entry")
			// What one key is, by MEMORY USAGE, for comparison.
			if usage, err := rdb.MemoryUsage(ctx, s.key(batch0(g)), 0).Result(); err == nil {
				b.ReportMetric(float64(usage), "memory-usage-B/key")
			}
			if b.N > 0 {
				b.Logf("commandstats per 1,000 entries: %s", commandstats(before, after, b.N))
			}
		})
	}
}

// batch0 returns the id of an entry that was written: the generator's
// previous one.
func batch0(g *entries) string {
	prev := entries{n: g.n - 1}
	return prev.next().ResponseID
}

// readInfo reads the numeric fields of INFO stats, memory, cpu and
// commandstats ("cmdstat_<name>" is the number of calls); "used_cpu" is
// used_cpu_sys + used_cpu_user, in seconds.
func readInfo(b *testing.B, rdb *redis.Client) map[string]float64 {
	b.Helper()
	txt, err := rdb.Info(context.Background(), "stats", "memory", "cpu", "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(txt, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if strings.HasPrefix(k, "cmdstat_") {
			// calls=N,usec=...
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			if f, err := strconv.ParseFloat(calls, 64); err == nil {
				out[k] = f
			}
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = f
		}
	}
	out["used_cpu"] = out["used_cpu_sys"] + out["used_cpu_user"]
	return out
}

func commandstats(before, after map[string]float64, n int) string {
	var parts []string
	for k, v := range after {
		if name, ok := strings.CutPrefix(k, "cmdstat_"); ok && v > before[k] {
			parts = append(parts, fmt.Sprintf("%s %.0f", name, (v-before[k])/float64(n)))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
