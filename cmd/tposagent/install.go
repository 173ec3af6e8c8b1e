package main

import "context"

func cmdInstall(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
func cmdUninstall(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
func cmdStart(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
func cmdStop(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
func cmdRestart(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
