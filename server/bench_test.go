package server

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// BenchmarkRESP measures a three-node cluster in this process through
// go-redis against the leader, like redis-benchmark -t set,get -c 64 -d 256
// -r 10000: 64 concurrent clients, 256-byte values, 10000 keys.
func BenchmarkRESP(b *testing.B) {
	c := newCluster(b, nil)
	ctx := testContext(b)
	rdb := redis.NewClient(&redis.Options{Addr: c.srvs[c.leader()].RedisAddr(), PoolSize: 64, MaxRetries: -1})
	defer rdb.Close()
	value := strings.Repeat("x", 256)
	for i := range 10000 {
		if err := rdb.Set(ctx, fmt.Sprintf("key:%d", i), value, 0).Err(); err != nil {
			b.Fatal(err)
		}
	}
	for _, op := range []string{"set", "get"} {
		b.Run(op, func(b *testing.B) {
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 clients in all
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					key := fmt.Sprintf("key:%d", rand.IntN(10000))
					var err error
					if op == "set" {
						err = rdb.Set(ctx, key, value, 0).Err()
					} else {
						err = rdb.Get(ctx, key).Err()
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
