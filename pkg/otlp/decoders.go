package otlp

import (
	"time"

	"github.com/klauspost/compress/zstd"
)

// inflaterBytes is what a gzip or deflate (zlib) reader holds while it
// reads a body: its 32 KiB window and state, charged to the request's
// reservation.
const inflaterBytes = 48 << 10

// zstd decoders are costly to make and their memory is set by the frame,
// not by the proxy: a frame may ask for a window of hundreds of megabytes.
// So the proxy keeps a few decoders with a capped window and reuses them,
// each for a body already read (a client that stalls holds none); a zstd
// body that finds none free within zstdWait is refused as an overload
// (429), and their memory is bounded by zstdDecoderCount * zstdMaxWindow
// whatever the clients send.
const (
	// zstdMaxWindow is the largest window a zstd frame may use: 8 MiB, what
	// RFC 8878 (section 3.1.1.1.2) recommends decoders support at least.
	zstdMaxWindow = 8 << 20
	// zstdDecoderCount is how many zstd bodies are decoded at once.
	zstdDecoderCount = 4
)

// zstdDecoders hands out the receiver's zstd decoders.
var zstdDecoders = newDecoderPool(zstdDecoderCount)

type decoderPool struct {
	free chan *zstd.Decoder
}

func newDecoderPool(n int) *decoderPool {
	p := &decoderPool{free: make(chan *zstd.Decoder, n)}
	for range n {
		p.free <- nil // made on first use
	}
	return p
}

// zstdWait is how long a zstd body waits for a decoder: each decodes a
// body already read in milliseconds.
const zstdWait = time.Second

// get returns a decoder, waiting up to wait for one; false when none came.
func (p *decoderPool) get(wait time.Duration) (*zstd.Decoder, bool) {
	var d *zstd.Decoder
	select {
	case d = <-p.free:
	default:
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case d = <-p.free:
		case <-t.C:
			return nil, false
		}
	}
	if d == nil {
		var err error
		d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxWindow))
		if err != nil { // only for invalid options
			p.free <- nil
			return nil, false
		}
	}
	return d, true
}

// put gives d back, detached from the body it read.
func (p *decoderPool) put(d *zstd.Decoder) {
	_ = d.Reset(nil)
	p.free <- d
}
