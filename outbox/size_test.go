package outbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// Filling the queue ends with ErrFull (a clear 503), never with bbolt's
// own "database reached maximum size", which fails a whole commit. On
// Windows bbolt grows the file in powers of two and compares that with its
// MaxSize, so a max_size whose next power of two is further away than the
// margin (here 40 MiB: the mapping must jump from 32 to 64 MiB) used to
// hit bbolt's limit first.
func TestErrFullComesBeforeBoltsLimit(t *testing.T) {
	for _, mib := range []int64{3, 40} {
		t.Run(fmt.Sprintf("%dMiB-%s", mib, runtime.GOOS), func(t *testing.T) {
			e := newEnv(t, func(o *outbox.Options) { o.MaxSize = mib << 20 })
			payload := []byte(fmt.Sprintf(`{"pad":%q}`, bytes.Repeat([]byte("ş"), 32<<10)))
			accepted := 0
			var err error
			for i := 0; ; i++ {
				if i > 10000 {
					t.Fatal("never full")
				}
				_, err = e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("kasa:", i), Payload: payload})
				if err != nil {
					break
				}
				accepted++
			}
			if !errors.Is(err, outbox.ErrFull) {
				t.Fatalf("after %d accepted (%d KiB each): %v, want ErrFull", accepted, len(payload)>>10, err)
			}
			if min := int(mib<<20) / len(payload) / 2; accepted < min {
				t.Fatalf("only %d accepted, want at least %d: the cap is far below max_size", accepted, min)
			}
			if st := stats(t, e.q); st.Pending != accepted {
				t.Fatalf("pending %d, accepted %d", st.Pending, accepted)
			}
			// Nothing accepted is lost: a drain delivers every one.
			e.run(t)
			testrig.WaitFor(t, "drained", 15*time.Second, func() bool { return stats(t, e.q).Delivered == uint64(accepted) })
			fi, _ := os.Stat(e.path)
			t.Logf("max %d MiB: %d accepted, then %v; file %d MiB", mib, accepted, err, fi.Size()>>20)
		})
	}
}
