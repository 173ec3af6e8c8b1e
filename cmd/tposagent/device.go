package main

import "context"

func cmdDevice(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
