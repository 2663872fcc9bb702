package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Requests that only a stream's leader answers. In a cluster the leader has
// applied everything it acknowledged, and a new leader everything its
// predecessor committed before it answers as leader; its followers, which
// answer direct gets too, may lag. See "History in a cluster" in the
// package doc.

// untilDone is a number of publish retries (on "no responders": a stream
// with no leader to take the message) that only the context ends.
const untilDone = math.MaxInt32

// errNoLeader says that the stream has no leader at the moment (an
// election): the caller waits a little and asks again.
var errNoLeader = errors.New("natsbroker: the stream has no leader at the moment")

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

const (
	codeNoPeers            = 10005 // JSClusterNoPeersErr
	codeClusterUnavailable = 10008 // JSClusterNotAvailErr
	codeNoMessage          = 10037 // JSNoMessageFoundErr
	codeStreamNotFound     = 10059 // JSStreamNotFoundErr
	codeMsgIDInProcess     = 10158 // JSStreamDuplicateMessageConflict: a publish with the same Nats-Msg-Id is being stored
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

// leaderGrace is how long leaderRequest waits for the leader's answer
// after another member's.
const leaderGrace = 250 * time.Millisecond

// leaderRequest sends a JetStream API request meant for a stream's leader
// and hands its answer to decode. Other members may answer the same
// request (see leaderInfo): decode says whether an answer is the
// leader's; one that is not is set aside, and the leader's awaited
// leaderGrace longer; if it does not come, the caller gets the other
// answer's error (errNoLeader when it had none).
func (b *Broker) leaderRequest(ctx context.Context, subj string, req any, decode func([]byte) (leader bool, err error)) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	inbox := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := b.nc.PublishRequest(subj, inbox, body); err != nil {
		return err
	}
	wait := ctx
	var other error
	for {
		m, err := sub.NextMsgWithContext(wait)
		if err != nil {
			if other != nil && ctx.Err() == nil {
				return other
			}
			return err
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return fmt.Errorf("natsbroker: %s: %w", subj, nats.ErrNoResponders)
		}
		leader, err := decode(m.Data)
		if leader {
			return err
		}
		if other == nil {
			other = err
			if other == nil {
				other = errNoLeader
			}
			gctx, cancel := context.WithTimeout(ctx, leaderGrace)
			defer cancel()
			wait = gctx
		}
	}
}

// leaderInfo reads a stream's information from its leader ($JS.API.STREAM.
// INFO). With a filter, State.Subjects counts the messages of each subject
// that matches it. In nats-server 2.15.2 (jetstream_api.go:2100-2134) the
// leader answers this request, but so does every member of the stream's
// group that believes the group has no leader, and, for the first 10s of
// its raft node (lostQuorumInterval; after a server restart too), the
// group's preferred member: each with its own state, which may lag. The
// leader's answer is the one whose cluster information has LeaderSince,
// which a raft node has exactly while it is in complete leader state
// (raft.go:1603-1613 sets it with leaderState, 6227-6230 clears both;
// jetstream_cluster.go:14075-14076 reports it).
func (b *Broker) leaderInfo(ctx context.Context, stream, filter string) (*jetstream.StreamInfo, error) {
	var req struct {
		Filter string `json:"subjects_filter,omitempty"`
	}
	req.Filter = filter
	var info *jetstream.StreamInfo
	err := b.leaderRequest(ctx, "$JS.API.STREAM.INFO."+stream, &req, func(data []byte) (bool, error) {
		var resp struct {
			jetstream.StreamInfo
			Error *apiError `json:"error"`
		}
		if err := json.Unmarshal(data, &resp); err != nil {
			return true, err
		}
		if resp.Error != nil {
			return resp.Error.ErrCode != codeClusterUnavailable, resp.Error.err()
		}
		c := resp.Cluster
		if c != nil && c.RaftGroup != "" && (c.Leader == "" || c.LeaderSince == nil) {
			return false, nil // a member's own view
		}
		info = &resp.StreamInfo
		return true, nil
	})
	return info, err
}

// leaderGet reads one message from a stream's leader ($JS.API.STREAM.MSG.
// GET, which only the leader answers with a message: jetstream_api.go:
// 3956-3959, and not in batches: 3987-3992): the message at req.Seq, or the
// first from req.Seq on matching req.NextFor, or the last matching
// req.LastFor. errNoMessage when there is none.
func (b *Broker) leaderGet(ctx context.Context, stream string, req directReq) (*storedMsg, error) {
	req.Batch = 0
	var sm *storedMsg
	err := b.leaderRequest(ctx, "$JS.API.STREAM.MSG.GET."+stream, &req, func(data []byte) (bool, error) {
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
		if err := json.Unmarshal(data, &resp); err != nil {
			return true, err
		}
		if resp.Error != nil {
			// Members that believe the group has no leader say so
			// (jetstream_api.go:3950-3954).
			return resp.Error.ErrCode != codeClusterUnavailable, resp.Error.err()
		}
		m := resp.Message
		if m == nil {
			return true, errors.New("natsbroker: empty answer to a message get")
		}
		sm = &storedMsg{seq: m.Seq, subj: m.Subject, data: m.Data, hdr: nats.Header{}, time: m.Time}
		if len(m.Header) > 0 {
			h, err := nats.DecodeHeadersMsg(m.Header)
			if err != nil {
				return true, fmt.Errorf("natsbroker: message %d: bad headers: %w", m.Seq, err)
			}
			sm.hdr = h
		}
		return true, nil
	})
	return sm, err
}
