package hub

import (
	"encoding/json"
	"strconv"
	"time"
)

// Position is where a publication sits in its room's log.
//
// Offset increases with every publication in the room but need not be
// contiguous: a broker may number all rooms out of one sequence, so only a
// broken chain of [Publication.Prev], never a jump in Offset, means a gap.
// Epoch names one unbroken history of the room; it changes when the broker
// can no longer vouch for older offsets (history lost or reset), and an offset
// means nothing outside its epoch.
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// String formats p as "epoch-offset", the form Server-Sent Events use as an
// event id.
func (p Position) String() string {
	return p.Epoch + "-" + strconv.FormatUint(p.Offset, 10)
}

// ClientInfo says who a client is: its connection id, the user the
// authentication hook gave it, and that hook's extra information.
type ClientInfo struct {
	Client string          `json:"client"`
	User   string          `json:"user,omitempty"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// Publication is one message of a room's log.
type Publication struct {
	Room string
	Position
	// Prev is the offset of the room's previous publication in the same
	// epoch, 0 for the first. A node that has delivered offset Prev and
	// receives this publication knows it missed nothing in between.
	Prev uint64
	Time time.Time
	// From is the publishing client; nil for publications made by the
	// server itself (Hub.Publish).
	From *ClientInfo
	// Data is the publication's JSON value.
	Data json.RawMessage
}
