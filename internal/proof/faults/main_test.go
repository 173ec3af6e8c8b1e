package faults_test

import (
	"os"
	"testing"

	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
)

func TestMain(m *testing.M) {
	lossyfs.MaybeServe() // the failing disk of the commit-fails row, served by a child
	os.Exit(m.Run())
}
