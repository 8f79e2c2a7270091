package main

import (
	"context"
	"fmt"
)

func cmdReschedule(ctx context.Context, args []string, e env) int {
	fmt.Fprintln(e.stderr, "execdb reschedule: not implemented yet")
	return exitUsage
}
