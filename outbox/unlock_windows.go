package outbox

import "os"

// syscallUnlock: on Windows the lock goes with the handle's Close.
func syscallUnlock(*os.File) error { return nil }
