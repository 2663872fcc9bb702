package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Requests that only a stream's leader answers. In a cluster the leader has
// applied everything it acknowledged, and a new leader everything its
// predecessor committed before it answers as leader; its followers, which
// answer direct gets too, may lag. See "History in a cluster" in the
// package doc.

// errNoLeader says that the stream has no leader at the moment (an
// election): the caller waits a little and asks again.
var errNoLeader = errors.New("natsbroker: the stream has no leader at the moment")

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

const (
	codeClusterUnavailable = 10008 // JSClusterNotAvailErr
	codeNoMessage          = 10037 // JSNoMessageFoundErr
	codeStreamNotFound     = 10059 // JSStreamNotFoundErr
)

func (e *apiError) err() error {
	switch e.ErrCode {
	case codeStreamNotFound:
		return jetstream.ErrStreamNotFound
	case codeNoMessage:
		return errNoMessage
	case codeClusterUnavailable:
		return errNoLeader
	}
	return fmt.Errorf("natsbroker: JetStream: %s (%d)", e.Description, e.ErrCode)
}

// apiRequest sends a JetStream API request and decodes its answer.
func (b *Broker) apiRequest(ctx context.Context, subj string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m, err := b.nc.RequestWithContext(ctx, subj, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("natsbroker: %s: %w", subj, err)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(m.Data, resp)
}

// leaderInfo reads a stream's information from its leader ($JS.API.STREAM.
// INFO). With a filter, State.Subjects counts the messages of each subject
// that matches it. Every member of a group that believes it has no leader
// answers this request too, with its own state (nats-server 2.15.2,
// jetstream_api.go:2100-2104): such an answer, which names no leader, is
// refused with errNoLeader.
func (b *Broker) leaderInfo(ctx context.Context, stream, filter string) (*jetstream.StreamInfo, error) {
	var req struct {
		Filter string `json:"subjects_filter,omitempty"`
	}
	req.Filter = filter
	var resp struct {
		jetstream.StreamInfo
		Error *apiError `json:"error"`
	}
	if err := b.apiRequest(ctx, "$JS.API.STREAM.INFO."+stream, &req, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error.err()
	}
	if resp.Cluster != nil && resp.Cluster.Leader == "" {
		return nil, errNoLeader
	}
	return &resp.StreamInfo, nil
}

// leaderGet reads one message from a stream's leader ($JS.API.STREAM.MSG.
// GET, which only the leader answers: jetstream_api.go:3956-3959, and not
// in batches: 3987-3992): the message at req.Seq, or the first from req.Seq
// on matching req.NextFor, or the last matching req.LastFor. errNoMessage
// when there is none.
func (b *Broker) leaderGet(ctx context.Context, stream string, req directReq) (*storedMsg, error) {
	req.Batch = 0
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *apiError `json:"error"`
	}
	if err := b.apiRequest(ctx, "$JS.API.STREAM.MSG.GET."+stream, &req, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error.err()
	}
	if resp.Message == nil {
		return nil, errors.New("natsbroker: empty answer to a message get")
	}
	m := resp.Message
	sm := &storedMsg{seq: m.Seq, subj: m.Subject, data: m.Data, hdr: nats.Header{}}
	if len(m.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Header)
		if err != nil {
			return nil, fmt.Errorf("natsbroker: message %d: bad headers: %w", m.Seq, err)
		}
		sm.hdr = h
	}
	sm.time = m.Time
	return sm, nil
}
