// One TLS 1.3 connection from Go's crypto/tls: with "-cache" it keeps a
// session cache (and so sends psk_key_exchange_modes), without it none.
// Writes one byte, reads one back, prints "ok".
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
)

func main() {
	addr := flag.String("addr", "", "host:port")
	caFile := flag.String("ca", "", "CA certificate (PEM)")
	cache := flag.Bool("cache", false, "keep a client session cache")
	flag.Parse()
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if *cache {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	c, err := tls.Dial("tcp", *addr, cfg)
	if err != nil {
		panic(err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		panic(err)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		panic(err)
	}
	c.Close()
	fmt.Println("ok")
}
