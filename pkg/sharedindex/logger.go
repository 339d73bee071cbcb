package sharedindex

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/redis/go-redis/v9"
)

// go-redis prints its own complaints (every failed dial, while Redis is
// down) with the standard logger; the index reports what matters once,
// through its own log and metrics, so go-redis's go to slog at debug level.
var quietOnce sync.Once

type debugLogger struct{}

func (debugLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

func quietGoRedis() { quietOnce.Do(func() { redis.SetLogger(debugLogger{}) }) }
