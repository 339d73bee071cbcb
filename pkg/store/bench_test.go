package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// bigStore writes a state.db of n index entries (response ids as OpenAI
// gives them) in dir and returns its path.
func bigStore(b *testing.B, dir string, n int) string {
	b.Helper()
	st, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	seen := time.Unix(1_772_366_400, 0)
	for i := 0; i < n; i += 1000 {
		changes := make([]index.Change, 0, 1000)
		for j := i; j < min(i+1000, n); j++ {
			changes = append(changes, index.Change{Entry: index.Entry{
				ResponseID: fmt.Sprintf("chatcmpl-%029d", j*7919%n),
				Span: index.Span{TraceID: pcommon.TraceID{15: byte(j)}, SpanID: pcommon.SpanID{7: byte(j)},
					Project: "default", Name: "ChatCompletion", Start: pcommon.Timestamp(j), Seen: seen},
			}})
		}
		if err := st.WriteIndex(changes); err != nil {
			b.Fatal(err)
		}
	}
	path := st.Path()
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// The cost at Open of a file of 100,000 index entries, part by part:
// Open as a whole (scanFile, then bbolt's Open, which walks the tree again
// to rebuild its free list), scanFile alone, bbolt's Open alone, and
// Tx.Check, which Open does not run (see scanFile).
func BenchmarkOpen100k(b *testing.B) {
	dir := b.TempDir()
	bigStore(b, dir, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		st, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		st.Close()
	}
}

func BenchmarkScan100k(b *testing.B) {
	path := bigStore(b, b.TempDir(), 100_000)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	for b.Loop() {
		res, err := scanFile(f, fi.Size(), false)
		if err != nil || res.nproblems != 0 {
			b.Fatal(err, res.problems)
		}
	}
}

func BenchmarkBoltOpen100k(b *testing.B) {
	path := bigStore(b, b.TempDir(), 100_000)
	b.ReportAllocs()
	for b.Loop() {
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		if err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}

func BenchmarkTxCheck100k(b *testing.B) {
	path := bigStore(b, b.TempDir(), 100_000)
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadIndex100k(b *testing.B) {
	st, err := Open(filepath.Dir(bigStore(b, b.TempDir(), 100_000)), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.LoadIndex(); err != nil {
			b.Fatal(err)
		}
	}
}
