// Package h2rpc calls gRPC methods over cleartext HTTP/2 on a unix socket:
// unary and server-streaming calls, one per connection, with the few
// HTTP/2 frames that takes (RFC 9113) and x/net's HPACK.
//
// The shim asks containerd's containers, images and content services a few
// questions per container; google.golang.org/grpc for that (its transport,
// net/http, TLS, resolvers and balancers, all initialised at start) was half
// the shim's binary and a third of its anonymous memory.
package h2rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Frame types and flags used (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingInitialWindowSize = 0x4

	// window is the flow-control window the client grants, on the stream
	// and on the connection: large enough that it never sends a
	// WINDOW_UPDATE (callers bound what they read).
	window = 1 << 30
	// initialWindow is the flow-control window each side starts with.
	initialWindow = 65535
	// maxFrame is the largest frame payload either side may send without
	// a setting saying otherwise.
	maxFrame = 16384
	// maxMessage bounds one response message.
	maxMessage = 64 << 20
)

const stream = 1 // the one stream of a connection

// Call calls method (/package.Service/Method) on the gRPC server at the unix
// socket path, sending the request message body (protobuf bytes) and the metadata md, and hands each response
// message to recv (once for a unary call; a return of an error ends the
// call with it). A non-OK status is returned as a gRPC status error.
func Call(ctx context.Context, path, method string, md map[string]string, body []byte, recv func([]byte) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	err = call(conn, method, md, body, recv)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func call(conn net.Conn, method string, md map[string]string, body []byte, recv func([]byte) error) error {
	w := &framer{w: conn}
	if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		return err
	}
	var settings [6]byte
	binary.BigEndian.PutUint16(settings[:2], settingInitialWindowSize)
	binary.BigEndian.PutUint32(settings[2:], window)
	w.frame(frameSettings, 0, 0, settings[:])
	var inc [4]byte
	binary.BigEndian.PutUint32(inc[:], window-initialWindow)
	w.frame(frameWindowUpdate, 0, 0, inc[:])

	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: method},
		{Name: ":authority", Value: "localhost"}, {Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	} {
		_ = enc.WriteField(f)
	}
	for k, v := range md {
		_ = enc.WriteField(hpack.HeaderField{Name: k, Value: v})
	}
	if hb.Len() > maxFrame {
		return fmt.Errorf("%s: request headers over %d bytes", method, maxFrame)
	}
	w.frame(frameHeaders, flagEndHeaders, stream, hb.Bytes())
	if len(body)+5 > initialWindow {
		// More would need the server's WINDOW_UPDATEs; containerd's
		// requests here are a name or a digest.
		return fmt.Errorf("%s: request of %d bytes, over the %d an HTTP/2 stream may send at first", method, len(body), initialWindow-5)
	}
	msg := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(msg[1:], uint32(len(body)))
	msg = append(msg, body...)
	for len(msg) > maxFrame {
		w.frame(frameData, 0, stream, msg[:maxFrame])
		msg = msg[maxFrame:]
	}
	w.frame(frameData, flagEndStream, stream, msg)
	if w.err != nil {
		return w.err
	}
	return readResponse(conn, w, method, recv)
}

// readResponse reads the frames of the response until its stream ends.
func readResponse(conn net.Conn, w *framer, method string, recv func([]byte) error) error {
	fields := map[string]string{}
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) { fields[f.Name] = f.Value })
	var data []byte // response bytes not yet parsed into messages
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return fmt.Errorf("%s: read frame: %w", method, err)
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags, sid := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&0x7fffffff
		if n > maxFrame {
			return fmt.Errorf("%s: frame of %d bytes, over %d", method, n, maxFrame)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(conn, payload); err != nil {
			return fmt.Errorf("%s: read frame: %w", method, err)
		}
		switch typ {
		case frameSettings:
			if flags&flagAck == 0 {
				w.frame(frameSettings, flagAck, 0, nil)
			}
		case framePing:
			if flags&flagAck == 0 {
				w.frame(framePing, flagAck, 0, payload)
			}
		case frameGoAway:
			return fmt.Errorf("%s: server sent GOAWAY before the response ended", method)
		case frameRSTStream:
			if sid == stream {
				code := uint32(0)
				if len(payload) == 4 {
					code = binary.BigEndian.Uint32(payload)
				}
				return fmt.Errorf("%s: stream reset by server, HTTP/2 error %d", method, code)
			}
		case frameHeaders, frameContinuation:
			if sid != stream {
				continue
			}
			block, err := unpad(typ, flags, payload)
			if err != nil {
				return fmt.Errorf("%s: %w", method, err)
			}
			if _, err := dec.Write(block); err != nil {
				return fmt.Errorf("%s: decode headers: %w", method, err)
			}
			if flags&flagEndHeaders != 0 {
				if err := dec.Close(); err != nil {
					return fmt.Errorf("%s: decode headers: %w", method, err)
				}
			}
			if typ == frameHeaders && flags&flagEndStream != 0 {
				return trailer(method, fields)
			}
		case frameData:
			if sid != stream {
				continue
			}
			b, err := unpad(typ, flags, payload)
			if err != nil {
				return fmt.Errorf("%s: %w", method, err)
			}
			data = append(data, b...)
			for len(data) >= 5 {
				if data[0] != 0 {
					return fmt.Errorf("%s: compressed response message", method)
				}
				size := binary.BigEndian.Uint32(data[1:5])
				if size > maxMessage {
					return fmt.Errorf("%s: response message of %d bytes, over %d", method, size, maxMessage)
				}
				if len(data) < 5+int(size) {
					break
				}
				if err := recv(data[5 : 5+size]); err != nil {
					return err
				}
				data = data[5+size:]
			}
			if flags&flagEndStream != 0 {
				return trailer(method, fields)
			}
		}
		if w.err != nil {
			return w.err
		}
	}
}

// trailer returns the call's outcome from its final header fields.
func trailer(method string, fields map[string]string) error {
	s, ok := fields["grpc-status"]
	if !ok {
		return fmt.Errorf("%s: response without grpc-status (HTTP status %s)", method, fields[":status"])
	}
	code, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("%s: grpc-status %q: %w", method, s, err)
	}
	if code == 0 {
		return nil
	}
	msg := fields["grpc-message"]
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	return status.Error(codes.Code(code), msg)
}

// unpad strips a frame's padding and (HEADERS) priority fields.
func unpad(typ, flags byte, p []byte) ([]byte, error) {
	if flags&flagPadded != 0 && typ != frameContinuation {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return nil, errors.New("bad padding")
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if typ == frameHeaders && flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, errors.New("bad priority fields")
		}
		p = p[5:]
	}
	return p, nil
}

// framer writes frames, keeping the first error.
type framer struct {
	w   io.Writer
	err error
}

func (f *framer) frame(typ, flags byte, sid uint32, payload []byte) {
	if f.err != nil {
		return
	}
	b := make([]byte, 9, 9+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], sid)
	_, f.err = f.w.Write(append(b, payload...))
}
