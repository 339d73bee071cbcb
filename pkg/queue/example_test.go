package queue_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/queue"
)

// One consumer delivers in order; a record whose delivery failed comes back
// from Next until it is acknowledged.
func Example() {
	dir, err := os.MkdirTemp("", "queue")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	q, err := queue.Open(queue.Config{Dir: dir, MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	for _, rec := range []string{"first", "second"} {
		if err := q.Append([]byte(rec)); err != nil {
			log.Fatal(err) // queue.ErrFull: tell the client to retry later
		}
	}
	failures := 1
	for q.Len() > 0 {
		r, err := q.Next(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		if failures > 0 {
			failures--
			fmt.Println("delivery failed:", string(r.Data))
			continue
		}
		fmt.Println("delivered:", string(r.Data))
		if err := q.Ack(r); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// delivery failed: first
	// delivered: first
	// delivered: second
}
