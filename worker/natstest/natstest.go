// Package natstest runs real, embedded NATS servers with JetStream for tests.
//
// Start gives a single node listening on a free 127.0.0.1 port with its
// store in a temporary directory; StartCluster gives an n-node JetStream
// cluster on loopback. Both shut down when the test ends. A server can be
// stopped and restarted on the same port with the same store, which is how
// tests simulate a NATS outage or a node loss.
//
//	srv := natstest.Start(t)
//	nc := natstest.Connect(t, srv.URL())
//	js, _ := jetstream.New(nc)
//	...
//	srv.Shutdown()   // the worker sees the connection drop
//	srv.Restart(t)   // same port, same streams and messages
//
// Server logs are silent. Set NATSTEST_LOG=1 to write them to stderr
// (NATSTEST_LOG=debug or trace for more).
//
// It also holds the small helpers the tests around it share: WaitFor and
// Poll poll a condition until a timeout, FreeAddr picks a free loopback
// address, Go runs a function (a worker's Run, a command) in the
// background until the test stops it or ends, and Parallel lets a package
// whose tests mostly wait run more of them at once.
//
// The package is meant for tests only; it takes a testing.TB and fails the
// test on any setup error.
package natstest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const (
	// readyTimeout bounds how long a (re)started server may take to accept
	// connections and to have JetStream ready.
	readyTimeout = 30 * time.Second
	// pollInterval is how often Poll, WaitFor and the readiness waits poll.
	pollInterval = 10 * time.Millisecond
)

// names makes server and cluster names unique within the process; the pid
// keeps them apart from servers of other test binaries running at once.
var names atomic.Uint64

func uniqueName(kind string) string {
	return fmt.Sprintf("natstest-%s-%d-%d", kind, os.Getpid(), names.Add(1))
}

// Option changes how Start configures a server.
type Option func(*config)

type config struct {
	port       int
	storeDir   string
	configFile string
}

// WithPort makes the server listen on port instead of a free one.
func WithPort(port int) Option {
	return func(c *config) { c.port = port }
}

// WithStoreDir makes the server keep its JetStream store in dir instead of
// a fresh temporary directory. Two servers started with the same dir (one
// after the other) share streams and messages.
func WithStoreDir(dir string) Option {
	return func(c *config) { c.storeDir = dir }
}

// WithConfigFile loads a nats-server configuration file (accounts, users,
// permissions, JetStream limits, ...) and runs it as a single local node.
// So that it can run in a test, these settings of the file are replaced:
// the client listener is 127.0.0.1 on a free port (or WithPort), the store
// is a temporary directory (or WithStoreDir), monitoring, websocket and
// MQTT listeners (if any) move to free 127.0.0.1 ports, and cluster,
// gateway and leafnode blocks, log files and pid files are dropped.
// JetStream is on only if the file turns it on.
func WithConfigFile(path string) Option {
	return func(c *config) { c.configFile = path }
}

// Server is an embedded nats-server. Its methods are safe for concurrent use.
type Server struct {
	mu       sync.Mutex
	tmpl     *server.Options // cloned for every start; NewServer mutates what it gets
	srv      *server.Server
	port     int
	storeDir string
	log      *logger
}

// Start runs a single-node server with JetStream on 127.0.0.1, on a free port
// and with its store in t.TempDir(), unless opts say otherwise. It returns
// once the server accepts connections and JetStream is ready, and shuts the
// server down when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}

	var o *server.Options
	if cfg.configFile != "" {
		var err error
		o, err = server.ProcessConfigFile(cfg.configFile)
		if err != nil {
			t.Fatalf("natstest: load config file: %v", err)
		}
		localize(o)
	} else {
		o = &server.Options{JetStream: true}
	}
	o.Host = "127.0.0.1"
	o.Port = cfg.port
	if o.Port == 0 {
		o.Port = FreePort(t)
	}
	o.StoreDir = cfg.storeDir
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	if o.ServerName == "" {
		o.ServerName = uniqueName("server")
	}

	s := newServer(o)
	t.Cleanup(s.Shutdown)
	s.start(t, true)
	return s
}

// localize makes the options of a configuration file fit for a test on one
// machine: no fixed ports other than the client one, nothing outside the
// test's directories, no cluster.
func localize(o *server.Options) {
	if o.HTTPPort != 0 {
		o.HTTPHost, o.HTTPPort = "127.0.0.1", server.RANDOM_PORT
	}
	if o.HTTPSPort != 0 {
		o.HTTPHost, o.HTTPSPort = "127.0.0.1", server.RANDOM_PORT
	}
	if o.Websocket.Port != 0 {
		o.Websocket.Host, o.Websocket.Port = "127.0.0.1", server.RANDOM_PORT
	}
	if o.MQTT.Port != 0 {
		o.MQTT.Host, o.MQTT.Port = "127.0.0.1", server.RANDOM_PORT
	}
	o.Cluster = server.ClusterOpts{}
	o.Routes = nil
	o.RoutesStr = ""
	o.Gateway = server.GatewayOpts{}
	o.LeafNode = server.LeafNodeOpts{}
	o.LogFile = ""
	o.Syslog = false
	o.RemoteSyslog = ""
	o.PidFile = ""
	o.PortsFileDir = ""
}

func newServer(o *server.Options) *Server {
	// The test process owns the signals; the server must not exit it.
	o.NoSigs = true
	o.NoLog = true // our own logger is installed instead
	o.DisableJetStreamBanner = true
	return &Server{tmpl: o, storeDir: o.StoreDir, log: newLogger(o.ServerName)}
}

// start runs the server from a clone of the template and waits until it
// accepts connections; with waitJS also until JetStream is ready (for a
// cluster node: it knows the meta leader and is caught up with it).
func (s *Server) start(t testing.TB, waitJS bool) {
	t.Helper()
	s.mu.Lock()
	if s.srv != nil && s.srv.Running() {
		s.mu.Unlock()
		t.Fatalf("natstest: server %s is already running", s.tmpl.ServerName)
	}
	o := s.tmpl.Clone()
	if s.port != 0 {
		o.Port = s.port // a restart: the port the first start got
	}
	srv, err := server.NewServer(o)
	if err != nil {
		s.mu.Unlock()
		t.Fatalf("natstest: new server %s: %v", s.tmpl.ServerName, err)
	}
	s.log.reset()
	srv.SetLoggerV2(s.log, s.log.debug, s.log.trace, false)
	srv.Start()
	s.srv = srv
	s.mu.Unlock()

	// Poll in short steps so that a server that gave up (a port in use)
	// fails the test at once rather than after the whole timeout.
	if !Poll(readyTimeout, func() bool {
		return srv.ReadyForConnections(time.Millisecond) || s.log.failed()
	}) || s.log.failed() {
		srv.Shutdown()
		t.Fatalf("natstest: server %s not ready for connections%s",
			s.tmpl.ServerName, s.log.lastErrors())
	}
	s.mu.Lock()
	if s.port == 0 {
		s.port = srv.Addr().(*net.TCPAddr).Port
	}
	s.mu.Unlock()

	if !waitJS || !s.tmpl.JetStream {
		return
	}
	if !Poll(readyTimeout, func() bool {
		return srv.JetStreamEnabled() && srv.JetStreamIsCurrent()
	}) {
		srv.Shutdown()
		t.Fatalf("natstest: server %s: JetStream not ready after %v%s",
			s.tmpl.ServerName, readyTimeout, s.log.lastErrors())
	}
}

// URL is the client URL, nats://127.0.0.1:PORT.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port()))
}

// Port is the client port; it stays the same across restarts.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Name is the server's name, unique within the test binary.
func (s *Server) Name() string {
	return s.tmpl.ServerName
}

// StoreDir is the JetStream store directory; it stays the same across restarts.
func (s *Server) StoreDir() string {
	return s.storeDir
}

// Server is the running nats-server, for its own APIs (Jsz, stepdowns, ...).
// A restart replaces it, so do not keep it across one.
func (s *Server) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Running reports whether the server is started and not shut down.
func (s *Server) Running() bool {
	srv := s.Server()
	return srv != nil && srv.Running()
}

// Shutdown stops the server gracefully (a cluster node hands off the raft
// groups it leads first) and waits until it is down. The store is kept.
// Calling it on a stopped server does nothing.
func (s *Server) Shutdown() {
	srv := s.Server()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart starts the server again, on the same port with the same store and
// name, shutting it down first if it is running. It returns once the server
// accepts connections and JetStream is ready; for a cluster node that means
// it has rejoined and caught up with the meta leader, so a majority of the
// cluster must be running.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Shutdown()
	s.start(t, true)
}

// Connect connects to url (one or a comma-separated list) and closes the
// connection when the test ends. It reconnects forever, quickly, so a client
// rides out a Shutdown and Restart; opts come after these defaults and
// override them.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{
		nats.Name("natstest"),
		nats.Timeout(2 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		t.Fatalf("natstest: connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
