package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// FileName is the database file in the data directory.
const FileName = "state.db"

// DefaultLockTimeout is how long Open waits for another process to release
// the file.
const DefaultLockTimeout = time.Second

const format = "1"

var (
	bucketMeta     = []byte("meta")
	bucketFeedback = []byte("feedback")
	bucketIndex    = []byte("index")
	keyFormat      = []byte("format")
)

// Options tune Open.
type Options struct {
	// Sync makes every transaction wait for the disk (fsync): it then
	// survives a power loss too, not only the process being killed. Off by
	// default; see the package documentation.
	Sync bool
	// LockTimeout is how long Open waits for another process holding the
	// file; zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// Logger reports records that cannot be read back, and (at ERROR) a
	// damaged file that Open replaced (see Recovery); nil means none.
	Logger *slog.Logger
}

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store is the proxy's state in its data directory. It is an index.Store
// and a feedback.Store, safe for concurrent use.
type Store struct {
	db       *bolt.DB
	log      *slog.Logger
	recovery *Recovery
}

var (
	_ index.Store    = (*Store)(nil)
	_ feedback.Store = (*Store)(nil)
)

// Open opens (or creates) the store in dir, creating dir if needed.
//
// A damaged state.db does not stop it: one that bbolt could not open, or
// would crash on (see scanFile), is moved aside, kept, and replaced by a
// new file holding every record that could still be read from it. Open
// then returns that store, with a [Recovery] saying what happened, also
// logged at ERROR. An empty or too short file is damage too: bbolt writes
// a new file's first pages before it returns. Open refuses (an error) only
// a directory it cannot use, a file another process holds, and a sound
// file of another format.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store: no data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	opts = opts.withDefaults()
	path := filepath.Join(dir, FileName)
	st, d, err := openFile(path, opts)
	if d != nil {
		return recoverFile(path, d, opts)
	}
	return st, err
}

// openFile opens the store at path, or returns the damage that keeps it
// from it, the file still open and locked.
func openFile(path string, opts Options) (*Store, *damage, error) {
	f, created, err := lockFile(path, opts.LockTimeout)
	if err != nil {
		return nil, nil, err
	}
	if !created {
		fi, err := f.Stat()
		if err != nil {
			return nil, nil, errors.Join(fmt.Errorf("store: %w", err), f.Close())
		}
		res, err := scanFile(f, fi.Size(), false)
		if err != nil {
			return nil, nil, errors.Join(fmt.Errorf("store: %s: %w", path, err), f.Close())
		}
		if res.nproblems > 0 {
			return nil, &damage{f: f}, nil
		}
	}
	var db *bolt.DB
	err = guarded(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			// The file is open and locked already: bbolt's own lock on it
			// succeeds at once.
			OpenFile:   func(string, int, os.FileMode) (*os.File, error) { return f, nil },
			Timeout:    opts.LockTimeout,
			NoSync:     !opts.Sync,
			NoGrowSync: !opts.Sync,
			// The free list is rebuilt by a scan at Open instead of being
			// written by every commit: the file is small, commits are many.
			NoFreelistSync: true,
			FreelistType:   bolt.FreelistMapType,
		})
		if err != nil {
			return err
		}
		return db.Update(prepare)
	})
	if err == nil {
		return &Store{db: db, log: opts.Logger.With("data_file", path)}, nil, nil
	}
	if pe := (*panicError)(nil); errors.As(err, &pe) && !created {
		return nil, &damage{f: f, db: db, reason: pe.Error()}, nil
	}
	if db != nil {
		err = errors.Join(err, db.Close())
	}
	_ = f.Close() // closed already if bbolt returned an error
	if created {
		// Not to be taken for a damaged file at the next start.
		_ = os.Remove(path)
	}
	return nil, nil, fmt.Errorf("store: open %s: %w", path, err)
}

// prepare creates the buckets of a new file and checks the format of an
// existing one.
func prepare(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	switch f := meta.Get(keyFormat); {
	case f == nil:
		if err := meta.Put(keyFormat, []byte(format)); err != nil {
			return err
		}
	case string(f) != format:
		return &formatError{format: bytes.Clone(f)}
	}
	for _, b := range [][]byte{bucketFeedback, bucketIndex} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// Path is the database file.
func (s *Store) Path() string { return s.db.Path() }

// Close closes the file; it waits for the transactions in progress.
func (s *Store) Close() error { return s.db.Close() }

// Counts are the records kept.
type Counts struct {
	Feedback, Index int
}

// Count returns the number of records in each bucket.
func (s *Store) Count() (Counts, error) {
	var c Counts
	err := s.db.View(func(tx *bolt.Tx) error {
		c.Feedback = tx.Bucket(bucketFeedback).Stats().KeyN
		c.Index = tx.Bucket(bucketIndex).Stats().KeyN
		return nil
	})
	return c, err
}

// WriteIndex applies the index's changes in one transaction.
func (s *Store) WriteIndex(changes []index.Change) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIndex)
		var buf []byte
		for _, c := range changes {
			k := []byte(c.ResponseID)
			if c.Removed {
				if err := b.Delete(k); err != nil {
					return err
				}
				continue
			}
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			buf = encodeSpan(buf[:0], seq, c.Span)
			// bbolt keeps the slice until the commit: each Put its own.
			if err := b.Put(k, append([]byte(nil), buf...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("cannot write the index to the data directory; a restart will forget these spans", "changes", len(changes), "err", err)
		return fmt.Errorf("store: write index: %w", err)
	}
	return nil
}

// LoadIndex returns every index entry, in the order they were written.
// Entries that cannot be decoded are deleted and logged.
func (s *Store) LoadIndex() ([]index.Entry, error) {
	type seqEntry struct {
		seq uint64
		e   index.Entry
	}
	var out []seqEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIndex)
		var bad [][]byte
		err := b.ForEach(func(k, v []byte) error {
			seq, span, err := decodeSpan(v)
			if err != nil {
				s.log.Warn("dropped an unreadable index entry", "response_id", string(k), "err", err)
				bad = append(bad, k)
				return nil
			}
			out = append(out, seqEntry{seq, index.Entry{ResponseID: string(k), Span: span}})
			return nil
		})
		if err != nil {
			return err
		}
		return deleteAll(b, bad)
	})
	if err != nil {
		return nil, fmt.Errorf("store: load index: %w", err)
	}
	slices.SortFunc(out, func(a, b seqEntry) int { return cmp.Compare(a.seq, b.seq) })
	entries := make([]index.Entry, len(out))
	for i, e := range out {
		entries[i] = e.e
	}
	return entries, nil
}

// savedJSON is a feedback's record; v is its version.
type savedJSON struct {
	V        int               `json:"v"`
	Feedback feedback.Feedback `json:"feedback"`
	Received time.Time         `json:"received"`
	Deadline time.Time         `json:"deadline"`
	// Voted: when the latest vote came in (absent from records of
	// versions before it, which read as zero).
	Voted time.Time `json:"voted,omitzero"`
}

// SaveFeedback writes feedbacks in one transaction.
func (s *Store) SaveFeedback(saved []feedback.Saved) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFeedback)
		for _, sv := range saved {
			v, err := json.Marshal(savedJSON{V: 1, Feedback: sv.Feedback, Received: sv.Received, Deadline: sv.Deadline, Voted: sv.Voted})
			if err != nil {
				return err
			}
			f := sv.Feedback
			if err := b.Put(feedbackKey(f.ResponseID, f.Name, f.Identifier, f.Target), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: save feedback: %w", err)
	}
	return nil
}

// RemoveFeedback deletes one feedback.
func (s *Store) RemoveFeedback(responseID, name, identifier string, target feedback.Target) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFeedback).Delete(feedbackKey(responseID, name, identifier, target))
	})
	if err != nil {
		return fmt.Errorf("store: remove feedback: %w", err)
	}
	return nil
}

// LoadFeedback returns every feedback kept. Records that cannot be decoded
// are deleted and logged.
func (s *Store) LoadFeedback() ([]feedback.Saved, error) {
	var out []feedback.Saved
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFeedback)
		var bad [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var sj savedJSON
			err := json.Unmarshal(v, &sj)
			if err == nil && sj.V != 1 {
				err = fmt.Errorf("record version %d", sj.V)
			}
			if err != nil {
				s.log.Error("dropped an unreadable pending feedback", "record", string(v), "err", err)
				bad = append(bad, k)
				return nil
			}
			out = append(out, feedback.Saved{Feedback: sj.Feedback, Received: sj.Received, Deadline: sj.Deadline, Voted: sj.Voted})
			return nil
		})
		if err != nil {
			return err
		}
		return deleteAll(b, bad)
	})
	if err != nil {
		return nil, fmt.Errorf("store: load feedback: %w", err)
	}
	return out, nil
}

// deleteAll deletes keys collected during a ForEach, which must not change
// the bucket itself.
func deleteAll(b *bolt.Bucket, keys [][]byte) error {
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// feedbackKey is the strings of a feedback's key, each as a uvarint length
// and its bytes, so that no choice of separator can make two keys collide:
// the response id, name and identifier, and the target unless it is the
// span (the default, "" in records written before targets existed), so
// that those records keep their keys.
func feedbackKey(responseID, name, identifier string, target feedback.Target) []byte {
	parts := []string{responseID, name, identifier}
	if target != "" && target != feedback.TargetSpan {
		parts = append(parts, string(target))
	}
	k := make([]byte, 0, len(responseID)+len(name)+len(identifier)+len(target)+4*binary.MaxVarintLen16)
	for _, s := range parts {
		k = binary.AppendUvarint(k, uint64(len(s)))
		k = append(k, s...)
	}
	return k
}
