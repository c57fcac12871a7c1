package bench

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// floor times the SSH work of n host updates at concurrency c with nothing
// around it, as ../shared/bench/floor does: an in-process x/crypto/ssh server
// that answers every exec at once, and a client that opens one connection and
// three exec sessions (version, update, health) per host. No rollout tool on
// x/crypto/ssh can beat it on this machine.
func floor(tb testing.TB, n, c int) time.Duration {
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hs, _ := ssh.NewSignerFromKey(hk)
	_, uk, _ := ed25519.GenerateKey(rand.Reader)
	us, _ := ssh.NewSignerFromKey(uk)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go floorServe(nc, cfg)
		}
	}()
	ccfg := &ssh.ClientConfig{User: "u", Auth: []ssh.AuthMethod{ssh.PublicKeys(us)}, HostKeyCallback: ssh.FixedHostKey(hs.PublicKey())}
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			for range jobs {
				cl, err := ssh.Dial("tcp", ln.Addr().String(), ccfg)
				if err != nil {
					tb.Error(err)
					return
				}
				for _, cmd := range []string{"version", "update v2", "health"} {
					s, err := cl.NewSession()
					if err != nil {
						tb.Error(err)
						return
					}
					if err := s.Run(cmd); err != nil {
						tb.Error(err)
					}
				}
				cl.Close()
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return time.Since(start)
}

func floorServe(nc net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		ch, rq, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			for r := range rq {
				if r.Type == "exec" {
					_ = r.Reply(true, nil)
					_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{0}))
					ch.Close()
				}
			}
		}()
	}
}
