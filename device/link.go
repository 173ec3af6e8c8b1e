package device

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tposagent/tposagent/device/gmp3"
)

// readSlice bounds each blocking read so a cancelled context is noticed
// quickly.
const readSlice = 100 * time.Millisecond

// maxBytesPerTry ends a try early when a port floods us.
const maxBytesPerTry = 64 << 10

// echoTry is one ECHO exchange in one dialect.
type echoTry struct {
	c     *conn
	d     gmp3.Dialect
	req   []byte
	seq   int
	ack   time.Duration // ACK wait, and the wait for the whole reply after it
	hold  time.Time     // the port's open ends by then: no wait goes past it
	tries int           // bad reply frames NAKed before giving up
}

// outcome ranks what went wrong in a try, so the most telling error of a
// probe is the one reported.
type outcome int

const (
	outSilent outcome = iota + 1 // nothing came back
	// outNAK: the device refused our frame, which says only "not this
	// dialect".
	outNAK
	// outNoise: bytes, but no ACK and no frame: something is wrong with
	// the line whatever the dialect.
	outNoise
	outReply // the device took our frame; its answer was bad
	outFinal // no use trying again (refusal, echo, unplugged, stalled, cancelled)
)

func classify(err error) outcome {
	switch {
	case errors.Is(err, gmp3.ErrResultCode), errors.Is(err, ErrEchoed), errors.Is(err, ErrDisconnected),
		errors.Is(err, ErrStalled), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return outFinal
	case errors.Is(err, ErrNAK):
		return outNAK
	case errors.Is(err, ErrGarbage), errors.Is(err, ErrZeroFlood):
		return outNoise
	case errors.Is(err, ErrBadFrame), errors.Is(err, errPartial), errors.Is(err, errNoReply):
		return outReply
	}
	return outSilent
}

// errPartial is a timeout with part of a frame received.
var errPartial = fmt.Errorf("partial answer: %w", ErrTimeout)

// errNoReply: the device ACKed but sent no answer in time.
var errNoReply = fmt.Errorf("acknowledged, but no answer: %w", ErrTimeout)

// noise counts bytes that were neither ACK/NAK nor part of a frame.
type noise struct{ bytes, zeros int }

func (n *noise) add(b []byte) {
	n.bytes += len(b)
	for _, c := range b {
		if c == 0 {
			n.zeros++
		}
	}
}

func (n noise) err(what string) error {
	switch {
	case n.bytes == 0:
		return nil
	case n.zeros == n.bytes:
		return fmt.Errorf("%s: %d zero bytes: %w", what, n.bytes, ErrZeroFlood)
	default:
		return fmt.Errorf("%s: %d bytes (%d zero) that form no frame: %w", what, n.bytes, n.zeros, ErrGarbage)
	}
}

// wait reads into buf until something arrives, deadline passes or ctx ends.
func (t *echoTry) wait(ctx context.Context, buf []byte, deadline time.Time) (int, error) {
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if time.Until(deadline) <= 0 {
			return 0, errIdle
		}
		until := time.Now().Add(readSlice)
		if deadline.Before(until) {
			until = deadline
		}
		n, err := t.c.read(buf, until)
		if errors.Is(err, errIdle) {
			continue
		}
		return n, err
	}
}

// until is now+d, but never past the end of the hold.
func (t *echoTry) until(d time.Duration) time.Time {
	end := time.Now().Add(d)
	if !t.hold.IsZero() && t.hold.Before(end) {
		return t.hold
	}
	return end
}

// writeBy is the deadline of a write: the ACK wait, cut at the hold (a
// moment is left for a byte that is due, such as the ACK of an answer).
func (t *echoTry) writeBy() time.Time {
	return maxTime(t.until(t.ack), time.Now().Add(50*time.Millisecond))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// run sends the request once and reads the answer.
func (t *echoTry) run(ctx context.Context) (gmp3.Response, error) {
	// What came before us is not our answer (Hugin does the same).
	if err := t.c.resetInput(); err != nil {
		return gmp3.Response{}, err
	}
	if err := t.c.write(t.req, t.writeBy()); err != nil {
		return gmp3.Response{}, fmt.Errorf("send echo: %w", err)
	}
	buf := make([]byte, 512)
	sc := gmp3.Scanner{Dialect: t.d}

	// The ACK: 06, or the reply's STX at once. NAK 15 or any other byte
	// refuses the frame.
	var nz noise
	waitStart := time.Now()
	n, err := t.wait(ctx, buf, t.until(t.ack))
	switch {
	case errors.Is(err, errIdle):
		return gmp3.Response{}, fmt.Errorf("no acknowledgement within %v: %w", time.Since(waitStart).Round(time.Millisecond), ErrTimeout)
	case err != nil:
		return gmp3.Response{}, fmt.Errorf("wait for acknowledgement: %w", err)
	case buf[0] == gmp3.ACK:
		sc.Feed(buf[1:n])
	case buf[0] == gmp3.STX:
		sc.Feed(buf[:n])
	case buf[0] == gmp3.NAK:
		return gmp3.Response{}, fmt.Errorf("wait for acknowledgement: %w", ErrNAK)
	default:
		nz.add(buf[:n])
		return gmp3.Response{}, nz.err("wait for acknowledgement")
	}

	deadline := t.until(t.ack)
	var lastErr error
	bad, total := 0, n
	for {
		f, err := sc.Next()
		if errors.Is(err, gmp3.ErrNeedMore) {
			if total >= maxBytesPerTry {
				break
			}
			n, err := t.wait(ctx, buf, deadline)
			if errors.Is(err, errIdle) {
				break
			}
			if err != nil {
				return gmp3.Response{}, fmt.Errorf("read answer after %d bytes: %w", total, err)
			}
			total += n
			sc.Feed(buf[:n])
			continue
		}
		if err != nil && !errors.Is(err, gmp3.ErrChecksum) && !errors.Is(err, gmp3.ErrNoETX) {
			continue // a stray STX in noise, or a frame that is no answer: dropped
		}
		if err != nil {
			// A damaged frame: ask for it again.
			lastErr = fmt.Errorf("answer: %w", err)
			bad++
			if werr := t.c.write([]byte{gmp3.NAK}, t.writeBy()); werr != nil {
				return gmp3.Response{}, fmt.Errorf("send nak: %w", werr)
			}
			if bad >= t.tries {
				return gmp3.Response{}, fmt.Errorf("%d damaged answers, last: %w", bad, lastErr)
			}
			continue
		}
		if f.Type == gmp3.TypeEchoRequest {
			return gmp3.Response{}, fmt.Errorf("answer: %w", ErrEchoed) // loopback: not acknowledged
		}
		resp, err := gmp3.ParseEchoResponse(f, t.seq)
		if werr := t.c.write([]byte{gmp3.ACK}, t.writeBy()); werr != nil && err == nil {
			return gmp3.Response{}, fmt.Errorf("send ack: %w", werr)
		}
		switch {
		case err == nil:
			return resp, nil
		case errors.Is(err, ErrWrongSequence):
			lastErr = err // a late answer to an earlier request; ours may follow
			continue
		}
		return gmp3.Response{}, err
	}
	nz.bytes, nz.zeros = sc.Dropped, sc.DroppedZeros
	switch {
	case lastErr != nil:
		return gmp3.Response{}, lastErr
	case sc.Buffered() > 0:
		return gmp3.Response{}, fmt.Errorf("%d bytes of an answer after %v: %w", sc.Buffered(), t.ack, errPartial)
	case nz.bytes > 0:
		return gmp3.Response{}, nz.err("answer")
	}
	return gmp3.Response{}, fmt.Errorf("within %v: %w", t.ack, errNoReply)
}
