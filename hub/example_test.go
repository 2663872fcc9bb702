package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/duplexws/duplex/hub"
)

func Example() {
	h := hub.New(hub.Options{
		// Who may connect: here, anyone who says their name.
		Authenticate: func(ctx context.Context, req hub.ConnectRequest) (hub.Identity, error) {
			var d struct{ Name string }
			if json.Unmarshal(req.Data, &d) != nil || d.Name == "" {
				return hub.Identity{}, &hub.Error{Code: hub.CodeUnauthorized, Message: "say your name"}
			}
			return hub.Identity{User: d.Name}, nil
		},
	})
	mux := http.NewServeMux()
	mux.Handle("/hub", h)
	mux.Handle("GET /hub.js", hub.ClientScript())
	mux.HandleFunc("GET /rooms/{room}/events", func(w http.ResponseWriter, r *http.Request) {
		h.ServeEvents(w, r, r.PathValue("room"))
	})
	srv := &http.Server{Addr: "localhost:0", Handler: mux}
	srv.RegisterOnShutdown(func() { h.Shutdown(context.Background()) })

	// The server publishes too, and reads the history.
	ctx := context.Background()
	pos, _ := h.Publish(ctx, "lobby", json.RawMessage(`{"text":"welcome"}`))
	hist, _ := h.History(ctx, "lobby", hub.HistoryQuery{Limit: 10})
	fmt.Println(pos.Offset, len(hist.Publications))

	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	h.Shutdown(sctx)
	// Output: 1 1
}
