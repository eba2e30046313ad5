// Command pause holds a pod's namespaces: it sleeps until it is signalled.
// The harness builds it into the node's sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// As PID 1 of a shared pid namespace it adopts orphans: reap them.
	go func() {
		for {
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(-1, &ws, 0, nil); err == syscall.ECHILD {
				time.Sleep(time.Second)
			}
		}
	}()
	<-sig
}
