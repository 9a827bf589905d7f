package shim

import (
	"context"
	"errors"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/ttrpcutil"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Publisher sends events to containerd.
type Publisher interface {
	// Publish sends event under topic in ctx's namespace; an event that
	// could not be sent is retried in the background, up to 5 times.
	Publish(ctx context.Context, topic string, event events.Event) error
	// Close ends the connection; events still being retried are dropped.
	Close() error
}

const (
	requeueSize = 2048
	maxRequeue  = 5
)

// remotePublisher forwards events to containerd's ttrpc events service,
// reconnecting once when the connection closed; an event that fails is
// retried after 1, 2, … 5 s, as containerd's shims do.
type remotePublisher struct {
	address string

	mu     sync.Mutex
	client *ttrpcutil.Client // nil until first used
	err    error

	requeue chan *item
	closed  chan struct{}
	once    sync.Once
}

type item struct {
	ev    *types.Envelope
	ctx   context.Context
	count int
}

// NewPublisher returns a publisher to containerd's ttrpc socket at address;
// it connects on first use.
func NewPublisher(address string) Publisher {
	p := &remotePublisher{address: address, requeue: make(chan *item, requeueSize), closed: make(chan struct{})}
	go p.processQueue()
	return p
}

func (p *remotePublisher) Publish(ctx context.Context, topic string, event events.Event) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	evt, err := typeurl.MarshalAnyToProto(event)
	if err != nil {
		return err
	}
	i := &item{ev: &types.Envelope{Timestamp: timestamppb.Now(), Namespace: ns, Topic: topic, Event: evt}, ctx: ctx}
	if err := p.forward(ctx, i.ev); err != nil {
		p.queue(i)
		return err
	}
	return nil
}

func (p *remotePublisher) processQueue() {
	for {
		select {
		case i := <-p.requeue:
			if i.count > maxRequeue {
				log.L.Errorf("evicting %s from queue because of retry count", i.ev.Topic)
				continue
			}
			if err := p.forward(i.ctx, i.ev); err != nil {
				log.L.WithError(err).Error("forward event")
				p.queue(i)
			}
		case <-p.closed:
			return
		}
	}
}

func (p *remotePublisher) queue(i *item) {
	go func() {
		i.count++
		select {
		case <-time.After(time.Duration(i.count) * time.Second):
		case <-p.closed:
			return
		}
		select {
		case p.requeue <- i:
		case <-p.closed:
		}
	}()
}

func (p *remotePublisher) conn() (*ttrpcutil.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil && p.err == nil {
		p.client, p.err = ttrpcutil.NewClient(p.address)
	}
	return p.client, p.err
}

func (p *remotePublisher) forward(ctx context.Context, ev *types.Envelope) error {
	client, err := p.conn()
	if err != nil {
		return err
	}
	send := func() error {
		service, err := client.EventsService()
		if err != nil {
			return err
		}
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = service.Forward(fctx, &eventsapi.ForwardRequest{Envelope: ev})
		return err
	}
	err = send()
	if !errors.Is(err, ttrpc.ErrClosed) {
		return err
	}
	if err := client.Reconnect(); err != nil {
		return err
	}
	return send()
}

func (p *remotePublisher) Close() error {
	var err error
	p.once.Do(func() {
		close(p.closed)
		p.mu.Lock()
		if p.client != nil {
			err = p.client.Close()
		}
		p.mu.Unlock()
	})
	return err
}
