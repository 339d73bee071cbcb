package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestCorruption damages each structure on disk, one case at a time, in
// the golden queues of both formats (ten segments, records of 8 to 507
// bytes, the ack position in the middle of the oldest segment): bytes
// flipped in every part of records, ranges zeroed, segments truncated, the
// ack file damaged. For each case Open must succeed, deliver exactly the
// records left intact that were not acknowledged (all on disk if the ack
// position is lost), in order, report each damaged run of records once
// with its bytes, and after more appends and a restart report nothing
// again. The expectations come from comparing the damaged bytes with the
// intact ones, record by record, not from the code under test.
func TestCorruption(t *testing.T) {
	for _, g := range []struct {
		name string
		dir  string
		f    format
	}{{"current", goldenCurrent, current}, {"legacy", goldenLegacy, legacy}} {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			base := loadLayout(t, g.dir, g.f)
			var stats []string
			for _, k := range damageKinds(base) {
				var cases, want, lost, worst, again int
				for i, d := range k.cases {
					// A restart after each case would double the run
					// time; one in four covers each kind.
					restart := i%4 == 0 || len(k.cases) < 20
					kept, dropped, repeated := checkDamage(t, base, d, false, restart)
					cases, want, lost, again = cases+1, want+kept, lost+dropped, again+repeated
					worst = max(worst, dropped)
					if k.runtime && (i%3 == 0 || len(k.cases) < 20) {
						checkDamage(t, base, d, true, restart)
					}
				}
				stats = append(stats, fmt.Sprintf("%s: %d cases, %d of %d unacknowledged records delivered (%.1f%%), at most %d lost in a case, %d acknowledged delivered again",
					k.name, cases, want, want+lost, 100*float64(want)/float64(want+lost), worst, again))
			}
			for _, s := range stats {
				t.Log(s)
			}
		})
	}
}

// layout is an intact queue directory and where each record is in it.
type layout struct {
	f       format
	files   map[string][]byte
	segs    []string // segment names, oldest first
	recs    map[string][]laidRec
	ackSlot [2]bool // which slot holds the newest position
}

type laidRec struct {
	off, size int64
	i         int // record(i, goldenMaxLen)
}

func loadLayout(t *testing.T, dir string, f format) layout {
	t.Helper()
	l := layout{f: f, files: readDir(t, dir), recs: map[string][]laidRec{}}
	for _, name := range slices.Sorted(maps.Keys(l.files)) {
		if _, ok := parseSegName(name); !ok {
			continue
		}
		l.segs = append(l.segs, name)
		b := l.files[name]
		for off := int64(0); off < int64(len(b)); {
			var n int64
			if f == legacy {
				n = int64(binary.LittleEndian.Uint32(b[off:]))
			} else {
				n = int64(binary.LittleEndian.Uint32(b[off+4:]))
			}
			hl := f.headerLen()
			i := int(binary.LittleEndian.Uint64(b[off+hl:]))
			l.recs[name] = append(l.recs[name], laidRec{off, hl + n, i})
			off += hl + n
		}
	}
	var gens [2]uint64
	for slot := range 2 {
		_, gens[slot], _ = decodeAck([ackRecLen]byte(l.files[ackName][slot*ackSlotOff:]))
	}
	l.ackSlot[0] = gens[0] > gens[1]
	l.ackSlot[1] = !l.ackSlot[0]
	return l
}

// damage is one case: a change to a copy of the files (a nil file is
// removed).
type damage struct {
	name   string
	change func(files map[string][]byte)
}

type damageKind struct {
	name    string
	cases   []damage
	runtime bool // also applied while the queue is open, before Next
}

func damageKinds(l layout) []damageKind {
	hl := l.f.headerLen()
	// Places in a record: every field of the header, payload bytes, and
	// the boundary with the next record.
	var places []int64
	for o := int64(0); o < hl; o += 4 {
		places = append(places, o) // the first byte of each field
	}
	places = append(places, hl-1, hl, hl+5, -1) // -1: the last byte
	var flips, zeros, cuts []damage
	for si, name := range l.segs {
		for _, r := range l.recs[name] {
			// Every place in the records of the oldest segment (which holds
			// the ack position) and of the newest (which has a tail), a
			// few in the others.
			every := si == 0 || si == len(l.segs)-1
			for _, p := range places {
				if !every && p != 0 && p != -1 {
					continue
				}
				off := r.off + p
				if p < 0 {
					off = r.off + r.size + p
				}
				flips = append(flips, damage{fmt.Sprintf("flip %s@%d", name, off), func(files map[string][]byte) {
					files[name][off] ^= 0x10
				}})
			}
			// Cut in the header, in the payload, at the end.
			for _, at := range []int64{r.off + 3, r.off + hl + 1, r.off + r.size} {
				if !every && at != r.off+hl+1 {
					continue
				}
				cuts = append(cuts, damage{fmt.Sprintf("truncate %s to %d", name, at), func(files map[string][]byte) {
					files[name] = files[name][:at]
				}})
			}
		}
		size := int64(len(l.files[name]))
		for _, z := range [][2]int64{{0, hl}, {size / 3, 512}, {size - 40, 40}, {0, size}} {
			from, n := z[0], min(z[1], size-z[0])
			zeros = append(zeros, damage{fmt.Sprintf("zero %s[%d:%d]", name, from, from+n), func(files map[string][]byte) {
				clear(files[name][from : from+n])
			}})
		}
		cuts = append(cuts, damage{fmt.Sprintf("truncate %s to 0", name), func(files map[string][]byte) {
			files[name] = files[name][:0]
		}})
	}
	// Several at once: across segments, in neighbouring records, and a run
	// of zeros over a segment boundary's neighbours.
	first, second := l.recs[l.segs[0]], l.recs[l.segs[1]]
	multi := []damage{
		{"flip two segments", func(files map[string][]byte) {
			files[l.segs[1]][second[0].off+hl+2] ^= 1
			files[l.segs[4]][l.recs[l.segs[4]][1].off+1] ^= 1
		}},
		{"flip neighbours", func(files map[string][]byte) {
			files[l.segs[1]][second[0].off+hl+2] ^= 1
			files[l.segs[1]][second[1].off] ^= 1
		}},
		{"flip the first unacknowledged and the last", func(files map[string][]byte) {
			files[l.segs[0]][first[len(first)-1].off] ^= 1
			last := l.segs[len(l.segs)-1]
			files[last][len(files[last])-1] ^= 1
		}},
		{"flip the last record of a segment and the first of the next", func(files map[string][]byte) {
			files[l.segs[1]][second[len(second)-1].off+hl+1] ^= 1
			files[l.segs[2]][1] ^= 1
		}},
		{"zero a record's end and the next's header", func(files map[string][]byte) {
			r := second[0]
			clear(files[l.segs[1]][r.off+r.size-3 : r.off+r.size+hl])
		}},
	}
	slot := func(newest bool) int64 {
		if l.ackSlot[0] == newest {
			return 0
		}
		return ackSlotOff
	}
	acks := []damage{
		{"ack newest slot", func(files map[string][]byte) { files[ackName][slot(true)+9] ^= 1 }},
		{"ack older slot", func(files map[string][]byte) { files[ackName][slot(false)+3] ^= 1 }},
		{"ack both slots", func(files map[string][]byte) {
			files[ackName][slot(true)+20] ^= 1
			files[ackName][slot(false)+20] ^= 1
		}},
		{"ack zeroed", func(files map[string][]byte) { clear(files[ackName]) }},
		{"ack removed", func(files map[string][]byte) { files[ackName] = nil }},
	}
	for _, n := range []int{0, 10, ackRecLen, ackSlotOff + 10, ackSlotOff + ackRecLen - 1} {
		acks = append(acks, damage{fmt.Sprintf("ack truncated to %d", n), func(files map[string][]byte) {
			files[ackName] = files[ackName][:n]
		}})
	}
	return []damageKind{
		{name: "flipped bytes", cases: flips, runtime: true},
		{name: "zeroed ranges", cases: zeros, runtime: true},
		{name: "truncated segments", cases: cuts},
		{name: "several at once", cases: multi, runtime: true},
		{name: "ack file", cases: acks},
	}
}

// expect derives what Open must find in files, l's directory damaged: the
// records to deliver and the damage to report.
func (l layout) expect(files map[string][]byte, dir string, runtime bool) ([]int, int64, []Corruption) {
	var ackAt pos
	var gen uint64
	ackOK := false
	for slot := range 2 {
		b := files[ackName]
		if len(b) < slot*ackSlotOff+ackRecLen {
			continue
		}
		p, g, ok := decodeAck([ackRecLen]byte(b[slot*ackSlotOff:]))
		if ok && (!ackOK || g > gen) {
			ackAt, gen, ackOK = p, g, true
		}
	}
	var want []int
	var wantBytes int64
	var found []Corruption
	if !ackOK {
		found = append(found, Corruption{Kind: AckLost, File: filepath.Join(dir, ackName)})
	}
	for si, name := range l.segs {
		seg, _ := parseSegName(name)
		b := files[name]
		var run *Corruption
		var runs []Corruption
		for _, r := range l.recs[name] {
			if ackOK && (seg.seq < ackAt.seq || seg.seq == ackAt.seq && r.off < ackAt.off) {
				run = nil // acknowledged: neither delivered nor reported
				continue
			}
			if r.off+r.size <= int64(len(b)) && bytes.Equal(b[r.off:r.off+r.size], l.files[name][r.off:r.off+r.size]) {
				want = append(want, r.i)
				wantBytes += r.size
				run = nil
				continue
			}
			present := min(max(int64(len(b))-r.off, 0), r.size)
			if runtime {
				present = r.size // the queue knows how long the segment was
			}
			if present == 0 {
				continue
			}
			if run == nil {
				runs = append(runs, Corruption{Kind: CorruptRecords, File: filepath.Join(dir, name), Offset: r.off})
				run = &runs[len(runs)-1]
			}
			run.Bytes += present
		}
		// The damage at the end of the newest segment, with nothing intact
		// after it, is a torn tail.
		if k := len(runs) - 1; k >= 0 && !runtime && si == len(l.segs)-1 && run != nil {
			runs[k].Kind = TornTail
		}
		found = append(found, runs...)
	}
	return want, wantBytes, found
}

// checkDamage applies d to a copy of l's directory, before Open (or, with
// runtime, after Open and before the first Next), and checks what the queue
// delivers and reports. It returns how many of the records not
// acknowledged it delivered, how many it lost, and how many acknowledged
// records it delivered again.
func checkDamage(t *testing.T, l layout, d damage, runtime, restart bool) (kept, lost, again int) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{}
	for name, b := range l.files {
		files[name] = bytes.Clone(b)
	}
	var found []Corruption
	cfg := Config{Dir: dir, SegmentBytes: 1024, OnCorrupt: func(c Corruption) { found = append(found, c) }}
	var q *Queue
	var err error
	if runtime {
		writeDir(t, dir, files)
		if q, err = Open(cfg); err != nil {
			t.Fatalf("%s: Open: %v", d.name, err)
		}
		d.change(files)
		for name, b := range files {
			if !bytes.Equal(b, l.files[name]) {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	} else {
		d.change(files)
		writeDir(t, dir, files)
		if q, err = Open(cfg); err != nil {
			t.Fatalf("%s: Open: %v", d.name, err)
		}
	}
	defer q.Close()
	want, wantBytes, wantFound := l.expect(files, dir, runtime)
	name := d.name
	if runtime {
		name += ", while open"
	}
	if !runtime && (q.Len() != len(want) || q.Bytes() != wantBytes) {
		t.Errorf("%s: Len %d, Bytes %d; want %d, %d", name, q.Len(), q.Bytes(), len(want), wantBytes)
	}
	if runtime {
		// Next waits when damage took every record left: a record
		// appended after the damage ends the drain.
		appendN(t, q, 999, 1000, goldenMaxLen)
		want = append(want, 999)
	}
	got := drain(t, q, goldenMaxLen)
	if err := equal(got, want); err != nil {
		t.Errorf("%s: %v", name, err)
	}
	if runtime {
		want = want[:len(want)-1]
	}
	var sum int64
	for _, c := range wantFound {
		sum += c.Bytes
	}
	if !slices.Equal(found, wantFound) || q.CorruptBytes() != sum {
		t.Errorf("%s: reported %+v (CorruptBytes %d), want %+v", name, found, q.CorruptBytes(), wantFound)
	}

	if restart {
		checkRestart(t, q, cfg, &found, name)
	}
	intact, _, _ := l.expect(l.files, "", false)
	for _, i := range intact {
		if slices.Contains(want, i) {
			kept++
		} else {
			lost++
		}
	}
	return kept, lost, len(want) - kept
}

// checkRestart checks that, past the damage, appends work and a restart
// reports nothing again.
func checkRestart(t *testing.T, q *Queue, cfg Config, found *[]Corruption, name string) {
	t.Helper()
	appendN(t, q, 1000, 1002, goldenMaxLen)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	*found = nil
	q = open(t, cfg)
	if err := equal(drain(t, q, goldenMaxLen), []int{1000, 1001}); err != nil {
		t.Errorf("%s: after a restart: %v", name, err)
	}
	if len(*found) != 0 {
		t.Errorf("%s: after a restart, reported again: %+v", name, *found)
	}
}
