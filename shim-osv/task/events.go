package task

import (
	"context"
	"sync"

	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/log"

	"github.com/feather-edge/feather/shim-osv/shim"
)

// eventQueue publishes the shim's events to containerd one at a time, in the
// order they were sent, from one goroutine — the order containerd's runtime
// v2 contract asks for (TaskCreate before TaskStart, TaskExit before the
// TaskDelete of the same task). send never blocks on the publisher: a slow
// containerd delays events, not task requests.
type eventQueue struct {
	ctx       context.Context // carries the namespace the publisher needs
	publisher shim.Publisher

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	pending []any
	closed  bool
	wake    chan struct{} // a send or close happened; buffered 1
	done    chan struct{} // closed when run has published everything and returned
}

// newEventQueue starts a queue publishing through publisher with ctx's
// values (its namespace); the queue owns publisher and closes it in close.
func newEventQueue(ctx context.Context, publisher shim.Publisher) *eventQueue {
	q := &eventQueue{ctx: context.WithoutCancel(ctx), publisher: publisher,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

// send queues event; after close it is dropped with a warning.
func (q *eventQueue) send(event any) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		log.G(q.ctx).WithField("topic", runtime.GetTopic(event)).Warn("event after shutdown dropped")
		return
	}
	q.pending = append(q.pending, event)
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run publishes queued events in order until the queue is closed and empty.
func (q *eventQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		batch, closed := q.pending, q.closed
		q.pending = nil
		q.mu.Unlock()
		for _, e := range batch {
			topic := runtime.GetTopic(e)
			if err := q.publisher.Publish(q.ctx, topic, e); err != nil {
				log.G(q.ctx).WithError(err).WithField("topic", topic).Warn("publish event")
			}
		}
		if closed && len(batch) == 0 {
			return
		}
		if len(batch) == 0 {
			<-q.wake
		}
	}
}

// close stops taking events, waits until those queued are published (or
// ctx is done), then closes the publisher. Idempotent.
func (q *eventQueue) close(ctx context.Context) error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		q.signal()
		select {
		case <-q.done:
		case <-ctx.Done():
			log.G(q.ctx).Warn("shutdown before every event was published")
		}
		q.closeErr = q.publisher.Close()
	})
	return q.closeErr
}
