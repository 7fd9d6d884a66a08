package deploy_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
}

// dockerStage is one FROM ... up to the next FROM.
type dockerStage struct {
	From         string
	Name         string
	Instructions []instruction
}

func (s dockerStage) all(cmd string) []string {
	var out []string
	for _, in := range s.Instructions {
		if in.Cmd == cmd {
			out = append(out, in.Args)
		}
	}
	return out
}

func parseDockerfile(t *testing.T) (globalArgs []string, stages []dockerStage) {
	t.Helper()
	var joined []string
	var cur strings.Builder
	for _, line := range strings.Split(string(readFile(t, "Dockerfile")), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		joined = append(joined, cur.String())
		cur.Reset()
	}
	if cur.Len() != 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	for _, l := range joined {
		cmd, args, _ := strings.Cut(l, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		switch {
		case in.Cmd == "FROM":
			f := strings.Fields(in.Args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
			st := dockerStage{From: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			stages = append(stages, st)
		case len(stages) == 0:
			if in.Cmd != "ARG" {
				t.Fatalf("%s before the first FROM", in.Cmd)
			}
			globalArgs = append(globalArgs, in.Args)
		default:
			stages[len(stages)-1].Instructions = append(stages[len(stages)-1].Instructions, in)
		}
	}
	return globalArgs, stages
}

func TestDockerfile(t *testing.T) {
	globalArgs, stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The builder uses the Go release go.mod asks for.
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(readFile(t, "../go.mod"))
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	if !strings.HasPrefix(build.From, "golang:") || !slices.Contains(globalArgs, "GO_VERSION="+string(m[1])) {
		t.Errorf("builder %s with args %q, want golang:${GO_VERSION} with GO_VERSION=%s", build.From, globalArgs, m[1])
	}

	runs := strings.Join(build.all("RUN"), "\n")
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", `-s -w`, "-X main.version=${VERSION}", "-X main.commit=${COMMIT}", "./cmd/revoker"} {
		if !strings.Contains(runs, want) {
			t.Errorf("builder RUN lacks %q", want)
		}
	}
	for _, arg := range []string{"VERSION", "COMMIT"} {
		if !slices.ContainsFunc(build.all("ARG"), func(a string) bool { return a == arg || strings.HasPrefix(a, arg+"=") }) {
			t.Errorf("builder lacks ARG %s", arg)
		}
	}

	if !strings.HasPrefix(final.From, distrolessPrefix) && final.From != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static or scratch", final.From)
	}
	if len(final.all("RUN")) != 0 {
		t.Error("final stage runs commands: it has no shell")
	}
	copies := strings.Join(final.all("COPY"), "\n")
	if !strings.Contains(copies, "--from="+build.Name) || !strings.Contains(copies, " /revoker") {
		t.Errorf("final stage COPY %q, want the binary from %s at /revoker", copies, build.Name)
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Fatal("final stage sets no USER")
	}
	if u := users[len(users)-1]; !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(u) {
		t.Errorf("USER %q, want a numeric non-root uid (Kubernetes runAsNonRoot checks it)", u)
	}
	if e := final.all("EXPOSE"); !slices.Equal(e, []string{httpPort}) {
		t.Errorf("EXPOSE %q, want %s", e, httpPort)
	}
	var entry, cmd []string
	if e := final.all("ENTRYPOINT"); len(e) != 1 || json.Unmarshal([]byte(e[0]), &entry) != nil || !slices.Equal(entry, []string{"/revoker"}) {
		t.Errorf("ENTRYPOINT %q, want exec form [\"/revoker\"]", e)
	}
	if c := final.all("CMD"); len(c) != 1 || json.Unmarshal([]byte(c[0]), &cmd) != nil || !slices.Equal(cmd, []string{"run"}) {
		t.Errorf("CMD %q, want [\"run\"]", c)
	}
	for _, env := range final.all("ENV") {
		name, value, _ := strings.Cut(env, "=")
		if !knownEnv(t)[name] {
			t.Errorf("ENV %s is not read by revoker", name)
		}
		if name == httpAddrEnv && !strings.HasSuffix(value, ":"+httpPort) {
			t.Errorf("ENV %s=%s does not listen on the exposed port", name, value)
		}
	}
}

// dockerignored reports whether path (slash-separated, relative to the repository
// root) is excluded by the patterns of .dockerignore (Docker's rules: patterns are
// anchored at the root, ** spans directories, a matched directory excludes its
// contents, ! re-includes, the last matching pattern wins).
func dockerignored(patterns []string, path string) bool {
	ignored := false
	for _, p := range patterns {
		negate := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$")
		if regexp.MustCompile(re.String()).MatchString(path) {
			ignored = !negate
		}
	}
	return ignored
}

func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(string(readFile(t, "../.dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	for _, keep := range []string{"go.mod", "go.sum", "cmd/revoker/main.go", "kalshi/client.go", "kalshi/emulator/emulator.go", "events/events.go", "worker/worker.go"} {
		if dockerignored(patterns, keep) {
			t.Errorf(".dockerignore excludes %s, which the build needs", keep)
		}
	}
	for _, drop := range []string{".git/HEAD", "deploy/Dockerfile", "deploy/kubernetes/deployment.yaml", "kalshi/client_test.go", "README.md", "docs/contract.md", "kalshi.pem", "secrets/revoker.nk", "cmd/revoker/.env"} {
		if !dockerignored(patterns, drop) {
			t.Errorf(".dockerignore lets %s into the build context", drop)
		}
	}
}
