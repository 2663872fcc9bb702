package websocket_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// A server that closes its WebSockets when it stops. http.Server.Shutdown
// does not close them: RegisterOnShutdown starts Server.Shutdown beside it
// (over HTTP/2, net/http waits for the WebSockets' streams, so the drain must
// already run), and the second Server.Shutdown waits for the WebSocket
// handlers, dropping what remains when ctx ends.
func ExampleServer() {
	ws := &websocket.Server{
		Handler: func(ctx context.Context, c *websocket.Conn) error {
			for {
				msg, err := c.Read(ctx) // returns the close once Shutdown sent it
				if err != nil {
					return err
				}
				if err := c.Write(ctx, msg.Type, msg.Data); err != nil {
					return err
				}
			}
		},
		ShutdownCode: websocket.StatusServiceRestart, // 1012: come back soon
		DrainWindow:  5 * time.Second,                // not all at once
	}
	mux := http.NewServeMux()
	mux.Handle("/echo", ws)
	hs := &http.Server{Addr: ":8080", Handler: mux}
	hs.RegisterOnShutdown(func() { ws.Shutdown(context.Background()) })

	stop, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		if err := hs.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	<-stop.Done()

	ctx, cancelShutdown := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShutdown()
	if err := hs.Shutdown(ctx); err != nil {
		log.Print("http shutdown: ", err)
	}
	if err := ws.Shutdown(ctx); err != nil {
		log.Print("websocket shutdown: ", err)
	}
}
