// A Go service's view of a tenant database: pgx v5 with its defaults, on the pooled URL the
// tenant Secret gives (DATABASE_URL). pgx's default query exec mode prepares every statement on
// the server under a name derived from its SQL and caches it, so two connections send the same
// names, and through a pool of one server connection they meet there.
//
// Prints {"total":…,"prepared":…}: the sum of every result, and how many of its statements the
// server connection holds prepared (looked up by the marker in their text, new in every run, so
// that statements left there by an earlier run do not count), for the test to check.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

const (
	rounds   = 30
	sessions = 2
)

var (
	marker = fmt.Sprintf("/* tenantdb pgx %016x */", rand.Uint64())
	double = "SELECT $1::int * 2 " + marker
	sum    = "SELECT $1::int + $2::int " + marker
	length = "SELECT length($1::text) " + marker
)

// run opens one connection and runs the statements rounds times: two on their own, two in a
// transaction (which holds the server connection until COMMIT in transaction pooling).
func run(ctx context.Context, url string) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	if mode := conn.Config().DefaultQueryExecMode; mode != pgx.QueryExecModeCacheStatement {
		return 0, fmt.Errorf("query exec mode is %v, not pgx's default cache_statement", mode)
	}
	var total int64
	for i := range rounds {
		var a, b int64
		if err := conn.QueryRow(ctx, double, i).Scan(&a); err != nil {
			return 0, err
		}
		if err := conn.QueryRow(ctx, sum, i, 1000).Scan(&b); err != nil {
			return 0, err
		}
		total += a + b
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var c, d int64
			if err := tx.QueryRow(ctx, length, strings.Repeat("x", i)).Scan(&c); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, double, c).Scan(&d); err != nil {
				return err
			}
			total += d
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}

func main() {
	ctx := context.Background()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		fmt.Fprintln(os.Stderr, "DATABASE_URL is not set")
		os.Exit(2)
	}
	totals := make([]int64, sessions)
	errs := make([]error, sessions)
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			totals[s], errs[s] = run(ctx, url)
		}()
	}
	wg.Wait()
	var total int64
	for s := range sessions {
		if errs[s] != nil {
			fmt.Fprintf(os.Stderr, "connection %d: %v\n", s, errs[s])
			os.Exit(1)
		}
		total += totals[s]
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close(ctx)
	var prepared int
	err = conn.QueryRow(ctx, "SELECT count(DISTINCT statement)::int FROM pg_prepared_statements WHERE strpos(statement, $1) > 0", marker).
		Scan(&prepared)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]any{"total": total, "prepared": prepared})
	fmt.Println(string(out))
}
