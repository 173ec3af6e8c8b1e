package main

import "context"

func cmdDoctor(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
