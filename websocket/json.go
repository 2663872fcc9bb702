package websocket

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
)

// JSON messages are read and written by free functions rather than methods:
// JSON is one encoding among many an application may choose, and it is
// built on Reader, Write and SendText like any other; Conn's methods stay
// the protocol's.

// JSONError reports a value that could not be encoded to JSON, or a message
// that could not be decoded into the value given to ReadJSON: not JSON, not
// of the value's shape, empty, or followed by a second value. The
// connection is unaffected; whether to go on or to close (1003, 1007 or
// 1008 are the usual codes) is the application's choice.
//
// Err is encoding/json's error (*json.SyntaxError, *json.UnmarshalTypeError,
// *json.UnsupportedTypeError, ...) or io.ErrUnexpectedEOF for a message that
// ends inside a value; errors.As reaches it through a JSONError.
type JSONError struct {
	Err error

	decoding bool
}

func (e *JSONError) Error() string {
	if e.decoding {
		return "websocket: message is not the JSON expected: " + e.Err.Error()
	}
	return "websocket: cannot encode the value as JSON: " + e.Err.Error()
}

func (e *JSONError) Unwrap() error { return e.Err }

var (
	errEmptyJSON    = errors.New("empty message")
	errTrailingJSON = errors.New("more than one JSON value in the message")
)

// ReadJSON reads the next message, text or binary, and decodes it into v
// with encoding/json. The message is decoded as it arrives, never held
// whole; the read limit applies as for Read.
//
// A message that does not decode gives a *JSONError and leaves the
// connection open: the next ReadJSON reads the next message. v may have
// been partly filled, as with json.Unmarshal. Any other error is Read's: a
// *CloseError (a normal close by the peer matches io.EOF) or ctx's error.
func ReadJSON(ctx context.Context, c *Conn, v any) error {
	_, r, err := c.Reader(ctx)
	if err != nil {
		return err
	}
	// The decoder does not say whether an error came from its reader (the
	// connection failed) or from the data; errorReader keeps the former.
	src := &errorReader{r: r}
	dec := json.NewDecoder(src)
	if err := dec.Decode(v); err != nil {
		switch {
		case src.err != nil:
			return src.err
		case err == io.EOF:
			// Not io.EOF: that would read as the peer's normal close.
			err = errEmptyJSON
		}
		return &JSONError{Err: err, decoding: true}
	}
	// Only white space may follow the value. Reading to the end also
	// reports a connection error that arrives with the message's tail.
	rest := io.MultiReader(dec.Buffered(), src)
	var buf [256]byte
	for {
		n, err := rest.Read(buf[:])
		if len(bytes.TrimLeft(buf[:n], " \t\r\n")) > 0 {
			return &JSONError{Err: errTrailingJSON, decoding: true}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// errorReader remembers the error of its reader, other than io.EOF.
type errorReader struct {
	r   io.Reader
	err error
}

func (e *errorReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// WriteJSON encodes v with encoding/json and sends it as a text message,
// at once, as Write does. A value that cannot be encoded gives a *JSONError
// and sends nothing.
func WriteJSON(ctx context.Context, c *Conn, v any) error {
	b, err := encodeJSON(v)
	if err != nil {
		return err
	}
	defer b.release()
	return c.Write(ctx, MessageText, b.message())
}

// SendJSON encodes v and queues it as a text message, as SendText does:
// Flush writes it. A value that cannot be encoded gives a *JSONError and
// queues nothing.
func SendJSON(c *Conn, v any) error {
	b, err := encodeJSON(v)
	if err != nil {
		return err
	}
	defer b.release()
	return c.SendText(b.message())
}

// jsonBuffer is an encoder with its buffer. Pooled, it makes encoding cost
// no allocation of its own: json.Marshal would copy every message out.
type jsonBuffer struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var jsonBuffers = sync.Pool{New: func() any {
	b := new(jsonBuffer)
	b.enc = json.NewEncoder(&b.buf)
	return b
}}

// maxPooledJSON bounds the buffers kept for reuse, so that one large
// message does not pin its memory.
const maxPooledJSON = 64 << 10

func encodeJSON(v any) (*jsonBuffer, error) {
	b := jsonBuffers.Get().(*jsonBuffer)
	if err := b.enc.Encode(v); err != nil {
		b.release()
		return nil, &JSONError{Err: err}
	}
	return b, nil
}

// message is the encoded value without the newline Encode ends it with.
func (b *jsonBuffer) message() []byte {
	return bytes.TrimSuffix(b.buf.Bytes(), []byte{'\n'})
}

func (b *jsonBuffer) release() {
	if b.buf.Cap() > maxPooledJSON {
		return
	}
	b.buf.Reset()
	jsonBuffers.Put(b)
}
