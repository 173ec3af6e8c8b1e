package main

import "context"

func cmdStatus(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
func cmdLicense(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
func cmdKasa(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
func cmdSpecialCode(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
func cmdOutbox(ctx context.Context, e *env, args []string) error {
	return usageErrorf("not implemented yet")
}
