package main

import "context"

func cmdRun(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
