package store

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Recovery is what Open did with a damaged state.db: it moved the file
// aside, kept for inspection, and put in its place a new one holding what
// could still be read. Its fields are set once, by Open.
type Recovery struct {
	// Time is when Open found the damage, in UTC; it names MovedTo.
	Time time.Time
	// MovedTo is the damaged file's new name, beside it:
	// state.db.damaged-20060102T150405Z (with -2, -3... if taken). Nothing
	// removes it.
	MovedTo string
	// Reason is the first damage found, e.g. "index bucket: page 9: past
	// the end of the file (36864 bytes)"; Problems lists the first 20, the
	// Reason first.
	Reason   string
	Problems []string
	// FeedbackSalvaged and IndexSalvaged are the pending feedbacks and index
	// entries read back from the damaged file, now in the new one.
	FeedbackSalvaged, IndexSalvaged int
	// FeedbackFromFreePages and IndexFromFreePages are those of the
	// salvaged that were read not from the tree but from older copies of a
	// part of it that could not be read (see the package documentation):
	// each may be an older version of its record, or one deleted since.
	FeedbackFromFreePages, IndexFromFreePages int
	// FeedbackLost and IndexLost are records found in the damaged file but
	// unreadable: lost for certain.
	FeedbackLost, IndexLost int
	// LostUnknown: part of the file could not be read at all (a page, its
	// end, a meta page, or all of it), so more records than counted may be
	// lost and how many is unknown. False: the Lost counts are exact.
	LostUnknown bool
}

// Recovery reports the damaged file Open replaced, or nil if the file was
// sound (or new).
func (s *Store) Recovery() *Recovery { return s.recovery }

// String says what happened in one line, for a log or a status page.
func (r *Recovery) String() string {
	var lost string
	n := r.FeedbackLost + r.IndexLost
	switch {
	case n == 0 && !r.LostUnknown:
		lost = "nothing lost"
	case n == 0:
		lost = "an unknown number lost"
	case !r.LostUnknown:
		lost = fmt.Sprintf("%d feedbacks and %d index entries lost", r.FeedbackLost, r.IndexLost)
	default:
		lost = fmt.Sprintf("at least %d feedbacks and %d index entries lost, how many more is unknown", r.FeedbackLost, r.IndexLost)
	}
	var free string
	if r.FeedbackFromFreePages+r.IndexFromFreePages > 0 {
		free = fmt.Sprintf(" (%d and %d of them from older copies, possibly outdated)", r.FeedbackFromFreePages, r.IndexFromFreePages)
	}
	return fmt.Sprintf("the data file was damaged (%s) and moved to %s; %d pending feedbacks and %d index entries salvaged%s, %s",
		r.Reason, r.MovedTo, r.FeedbackSalvaged, r.IndexSalvaged, free, lost)
}

// LogValue makes a Recovery a group of attributes in a slog record.
func (r *Recovery) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("moved_to", r.MovedTo),
		slog.String("reason", r.Reason),
		slog.Int("feedback_salvaged", r.FeedbackSalvaged),
		slog.Int("index_salvaged", r.IndexSalvaged),
		slog.Int("feedback_from_free_pages", r.FeedbackFromFreePages),
		slog.Int("index_from_free_pages", r.IndexFromFreePages),
		slog.Int("feedback_lost", r.FeedbackLost),
		slog.Int("index_lost", r.IndexLost),
		slog.Bool("lost_unknown", r.LostUnknown),
		slog.Any("problems", r.Problems),
	)
}

// damage is a state.db found unsound, still open and locked.
type damage struct {
	f *os.File
	// db is bbolt's handle on f when bbolt panicked inside a transaction.
	db *bolt.DB
	// reason is bbolt's panic; empty when the scan found the damage.
	reason string
}

func (d *damage) close() {
	if d.db != nil {
		_ = guarded(d.db.Close)
		return
	}
	_ = d.f.Close()
}

// panicError is a panic or memory fault in bbolt, made an error.
type panicError struct{ value any }

func (e *panicError) Error() string { return fmt.Sprintf("bbolt panicked: %v", e.value) }

// guarded runs fn, a call into bbolt on a file it might not survive, and
// turns a panic into an error, a memory fault included: bbolt reads its
// file through a memory map, and a page past the end of a truncated file
// raises SIGBUS, which crashes the process unless the goroutine asked for
// a panic instead (SetPanicOnFault, restored on return). It cannot reach
// bbolt's own goroutines; scanFile keeps from bbolt what would panic there.
func guarded(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v}
		}
	}()
	return fn()
}

// errLocked: another open file holds the lock.
var errLocked = errors.New("locked")

// lockFile opens path, creating it if missing (created), and takes the
// lock bbolt takes, waiting up to timeout for another process to release
// it.
func lockFile(path string, timeout time.Duration) (f *os.File, created bool, err error) {
	deadline := time.Now().Add(timeout)
	for {
		// Identifiers are often user ids: the file is the proxy user's alone.
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		created = err == nil
		if errors.Is(err, fs.ErrExist) {
			f, err = os.OpenFile(path, os.O_RDWR, 0)
		}
		switch {
		case errors.Is(err, fs.ErrNotExist) && time.Now().Before(deadline):
			// Moved aside between the two opens: again.
		case err != nil:
			return nil, false, fmt.Errorf("store: %w", err)
		default:
			err = tryLock(f)
			if err == nil {
				// The file may have been moved aside while this waited for
				// its lock: then lock the one now in its place.
				fi, serr := f.Stat()
				pi, perr := os.Stat(path)
				if serr == nil && perr == nil && os.SameFile(fi, pi) {
					return f, created, nil
				}
			}
			_ = f.Close()
			if err != nil && !errors.Is(err, errLocked) {
				return nil, false, fmt.Errorf("store: lock %s: %w", path, err)
			}
		}
		if time.Now().After(deadline) {
			return nil, false, fmt.Errorf("store: %s is in use by another process (another proxy with the same data directory?)", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recoverFile replaces the damaged state.db by a new file holding what
// could be read from it, and reports it. The damaged file keeps its bytes
// and its lock until the new one is in place. The order is such that a
// crash at any point loses nothing more: the new file is written under a
// temporary name, the damaged one is linked to its new name, and only then
// the new one renamed over path (a crash in between finds the damaged
// file again and does it all again).
func recoverFile(path string, d *damage, opts Options) (*Store, error) {
	defer d.close()
	fi, err := d.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	res, err := scanFile(d.f, fi.Size(), true)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	problems := res.problems
	if d.reason != "" {
		problems = append([]string{d.reason}, problems...)
	}
	if more := res.nproblems - len(res.problems); more > 0 {
		problems = append(problems, fmt.Sprintf("and %d more", more))
	}
	if len(problems) == 0 {
		// Cannot happen: d comes from a scan that found damage, or from
		// bbolt's panic.
		problems = []string{"unknown damage"}
	}
	now := time.Now().UTC()

	tmp := path + ".salvage"
	// A left-over is a salvage cut short: the damaged file is still there.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := writeSalvage(tmp, res, opts); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("store: %s is damaged (%s) and what could be read from it cannot be written: %w", path, problems[0], err)
	}
	moved, err := moveAside(path, now)
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("store: %s is damaged (%s) and cannot be moved aside: %w", path, problems[0], err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("store: %s was damaged and moved to %s; the salvaged %s cannot take its place: %w", path, moved, tmp, err)
	}
	if opts.Sync {
		syncDir(filepath.Dir(path))
	}

	st, again, err := openFile(path, opts)
	if again != nil {
		again.close()
		return nil, fmt.Errorf("store: %s was damaged and moved to %s; the file written with what could be read is unsound", path, moved)
	}
	if err != nil {
		return nil, err
	}
	c, err := st.Count()
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	st.recovery = &Recovery{
		Time:                  now,
		MovedTo:               moved,
		Reason:                problems[0],
		Problems:              problems,
		FeedbackSalvaged:      c.Feedback,
		IndexSalvaged:         c.Index,
		FeedbackFromFreePages: res.feedbackFree,
		IndexFromFreePages:    res.indexFree,
		FeedbackLost:          res.feedbackLost,
		IndexLost:             res.indexLost,
		LostUnknown:           res.lostUnknown,
	}
	opts.Logger.Error("the data file was damaged: it was moved aside and a new one holds what could be read from it",
		"data_file", path, "recovery", st.recovery)
	return st, nil
}

// writeSalvage writes a new store at path with the records res collected.
// It syncs as the store does (Options.Sync): if a power loss leaves it
// unreadable, the next Open finds it damaged, and the damaged original is
// kept in any case.
func writeSalvage(path string, res *scanResult, opts Options) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        opts.LockTimeout,
		NoSync:         !opts.Sync,
		NoGrowSync:     !opts.Sync,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return err
	}
	// A key read twice (a page reached from two places) keeps its last
	// write: the index entry of the highest sequence.
	slices.SortStableFunc(res.index, func(a, b record) int { return cmp.Compare(a.seq, b.seq) })
	err = db.Update(func(tx *bolt.Tx) error {
		if err := prepare(tx); err != nil {
			return err
		}
		fb, ix := tx.Bucket(bucketFeedback), tx.Bucket(bucketIndex)
		for _, r := range res.feedback {
			if err := fb.Put(r.key, r.value); err != nil {
				return err
			}
		}
		for _, r := range res.index {
			if err := ix.Put(r.key, r.value); err != nil {
				return err
			}
		}
		return ix.SetSequence(res.indexSeq)
	})
	return errors.Join(err, db.Close())
}

// moveAside gives the damaged file at path a name of its own beside it,
// as a hard link (path keeps it until the new file replaces it) or, where
// links fail, by renaming it.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".damaged-" + now.Format("20060102T150405Z")
	for i := 1; ; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		err := os.Link(path, name)
		if err == nil {
			return name, nil
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if _, err := os.Lstat(name); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return name, os.Rename(path, name)
	}
}

// syncDir makes the renames in dir durable, where the system allows.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
