package deploy_test

import (
	"encoding/json"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// k8sObject is one manifest document; Raw is its JSON for decoding the spec.
type k8sObject struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Metadata   k8sMeta `json:"metadata"`
	File       string  `json:"-"`
	Raw        []byte  `json:"-"`
}

type k8sMeta struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
}

type labelSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type securityContext struct {
	RunAsNonRoot             *bool
	RunAsUser                *int64
	RunAsGroup               *int64
	FSGroup                  *int64
	ReadOnlyRootFilesystem   *bool
	AllowPrivilegeEscalation *bool
	Privileged               *bool
	Capabilities             *struct{ Add, Drop []string }
	SeccompProfile           *struct{ Type string }
}

type envVar struct {
	Name      string
	Value     string
	ValueFrom *struct {
		SecretKeyRef    *struct{ Name, Key string }
		ConfigMapKeyRef *struct{ Name, Key string }
	}
}

type probe struct {
	HTTPGet *struct {
		Path string
		Port any // number or port name
	}
}

type container struct {
	Name, Image   string
	Command, Args []string
	Env           []envVar
	EnvFrom       []struct{ ConfigMapRef, SecretRef *struct{ Name string } }
	Ports         []struct {
		Name, Protocol string
		ContainerPort  int
	}
	ReadinessProbe  *probe
	LivenessProbe   *probe
	Resources       struct{ Requests, Limits map[string]any }
	SecurityContext securityContext
	VolumeMounts    []struct {
		Name, MountPath, SubPath string
		ReadOnly                 bool
	}
}

type deployment struct {
	Spec struct {
		Replicas *int
		Selector labelSelector
		Template struct {
			Metadata k8sMeta
			Spec     struct {
				ServiceAccountName            string
				AutomountServiceAccountToken  *bool
				TerminationGracePeriodSeconds *int
				SecurityContext               securityContext
				TopologySpreadConstraints     []struct {
					TopologyKey, WhenUnsatisfiable string
					LabelSelector                  labelSelector
				}
				Affinity *struct {
					PodAntiAffinity json.RawMessage
				}
				InitContainers []container
				Containers     []container
				Volumes        []struct {
					Name   string
					Secret *struct {
						SecretName  string
						DefaultMode *int
						Items       []struct{ Key, Path string }
					}
				}
			}
		}
	}
}

// manifests loads every document of every kubernetes/*.yaml file.
func manifests(t *testing.T, pattern string) []k8sObject {
	t.Helper()
	var out []k8sObject
	for _, f := range glob(t, pattern) {
		docs, err := yamlDocuments(readFile(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, d := range docs {
			var o k8sObject
			if err := json.Unmarshal(d, &o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			o.File, o.Raw = filepath.Base(f), d
			out = append(out, o)
		}
	}
	return out
}

// kubernetes returns the objects the kustomization deploys, by kind; each kind once.
func kubernetes(t *testing.T) map[string]k8sObject {
	t.Helper()
	out := map[string]k8sObject{}
	for _, o := range manifests(t, "kubernetes/*.yaml") {
		if o.File == "kustomization.yaml" || o.File == "secret.example.yaml" {
			continue
		}
		if _, dup := out[o.Kind]; dup {
			t.Fatalf("two %s objects", o.Kind)
		}
		out[o.Kind] = o
	}
	return out
}

func decodeSpec(t *testing.T, o k8sObject, v any) {
	t.Helper()
	if err := json.Unmarshal(o.Raw, v); err != nil {
		t.Fatalf("%s %s: %v", o.Kind, o.Metadata.Name, err)
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	var k struct {
		Namespace string
		Resources []string
		Images    []struct{ Name, NewName, NewTag, Digest string }
	}
	docs, err := yamlDocuments(readFile(t, "kubernetes/kustomization.yaml"))
	if err != nil || len(docs) != 1 {
		t.Fatalf("kustomization.yaml: %d documents, %v", len(docs), err)
	}
	if err := json.Unmarshal(docs[0], &k); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range glob(t, "kubernetes/*.yaml") {
		switch name := filepath.Base(f); name {
		case "kustomization.yaml", "secret.example.yaml":
		default:
			want = append(want, name)
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %q, want every manifest %q", got, want)
	}
	if slices.Contains(k.Resources, "secret.example.yaml") {
		t.Error("the example Secret is a resource: applying would overwrite real credentials")
	}
	if k.Namespace == "" {
		t.Error("kustomization sets no namespace")
	}
	d := kubernetes(t)["Deployment"]
	var dep deployment
	decodeSpec(t, d, &dep)
	if len(k.Images) != 1 || len(dep.Spec.Template.Spec.Containers) == 0 || k.Images[0].Name != dep.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("kustomization images %+v do not set the container image", k.Images)
	}
}

func TestManifestsAreLabelledAndNamed(t *testing.T) {
	for _, o := range manifests(t, "kubernetes/*.yaml") {
		if o.File == "kustomization.yaml" {
			continue
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("%s: object without apiVersion, kind or name", o.File)
		}
		if o.Metadata.Labels["app.kubernetes.io/name"] != "revoker" {
			t.Errorf("%s: %s %s lacks app.kubernetes.io/name: revoker", o.File, o.Kind, o.Metadata.Name)
		}
	}
	objs := kubernetes(t)
	for _, kind := range []string{"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "PodDisruptionBudget", "NetworkPolicy", "Service", "ServiceMonitor"} {
		if _, ok := objs[kind]; !ok {
			t.Errorf("no %s", kind)
		}
	}
	if o := objs["ServiceMonitor"]; o.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %q", o.APIVersion)
	}
	var sa struct{ AutomountServiceAccountToken *bool }
	decodeSpec(t, objs["ServiceAccount"], &sa)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("ServiceAccount: automountServiceAccountToken is not false")
	}
}

// configMapData is the ConfigMap's data: the environment of the pods.
func configMapData(t *testing.T) map[string]string {
	t.Helper()
	var cm struct{ Data map[string]any }
	decodeSpec(t, kubernetes(t)["ConfigMap"], &cm)
	out := map[string]string{}
	for k, v := range cm.Data {
		s, ok := v.(string)
		if !ok {
			t.Errorf("ConfigMap %s is %T, want a string (quote it)", k, v)
		}
		out[k] = s
	}
	return out
}

func revokerDeployment(t *testing.T) (deployment, container) {
	t.Helper()
	var d deployment
	decodeSpec(t, kubernetes(t)["Deployment"], &d)
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || len(d.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatalf("Deployment has %d containers and %d init containers, want just revoker", len(cs), len(d.Spec.Template.Spec.InitContainers))
	}
	return d, cs[0]
}

func TestDeploymentEnvironment(t *testing.T) {
	d, c := revokerDeployment(t)
	cm := kubernetes(t)["ConfigMap"]
	env := configMapData(t)
	for name := range env {
		if !knownEnv(t)[name] {
			t.Errorf("ConfigMap sets %s, which revoker does not read", name)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil || ef.ConfigMapRef.Name != cm.Metadata.Name {
			t.Errorf("envFrom %+v: want only the ConfigMap %s", ef, cm.Metadata.Name)
		}
	}
	if len(c.EnvFrom) != 1 {
		t.Errorf("container takes envFrom %d sources, want the ConfigMap", len(c.EnvFrom))
	}
	for _, e := range c.Env {
		if !knownEnv(t)[e.Name] && e.Name != "GOMEMLIMIT" {
			t.Errorf("container sets %s, which revoker does not read", e.Name)
		}
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s set twice (env and ConfigMap)", e.Name)
		}
		env[e.Name] = e.Value
	}
	if _, ok := env["KALSHI_PRIVATE_KEY"]; ok {
		t.Error("KALSHI_PRIVATE_KEY puts the key in the environment: mount it and use KALSHI_PRIVATE_KEY_PATH")
	}
	for _, e := range c.Env {
		if e.Name == "KALSHI_API_KEY_ID" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Error("KALSHI_API_KEY_ID is not taken from the Secret")
		}
	}

	// revoker run, binding to pre-provisioned streams (the worker user cannot create
	// them), the mode set by the environment, so that revoker check in the pod judges
	// the same one.
	if len(c.Command) != 0 || len(c.Args) == 0 || c.Args[0] != "run" || slices.Contains(c.Args, noProvisionFlag) {
		t.Errorf("command %q args %q, want the image's entrypoint with run, and the mode from %s", c.Command, c.Args, noProvisionEnv)
	}
	if on, err := strconv.ParseBool(env[noProvisionEnv]); err != nil || !on {
		t.Errorf("%s %q, want true", noProvisionEnv, env[noProvisionEnv])
	}

	replicas := 0
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if replicas < 2 {
		t.Errorf("replicas %d, want at least 2", replicas)
	}
	if share := env[rateShareEnv]; share != "auto" {
		t.Errorf("%s %q: any fixed share overspends the account's budget once the Deployment is scaled; want auto", rateShareEnv, share)
	}

	// Enough time to finish an attempt, publish its result and drain.
	attempt, err := time.ParseDuration(env["REVOKER_ATTEMPT_TIMEOUT"])
	if err != nil {
		t.Errorf("REVOKER_ATTEMPT_TIMEOUT %q: %v", env["REVOKER_ATTEMPT_TIMEOUT"], err)
	}
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second < attempt+30*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v: want at least REVOKER_ATTEMPT_TIMEOUT + 30s", grace)
	}
}

func TestDeploymentHTTPEndpoints(t *testing.T) {
	_, c := revokerDeployment(t)
	host, port, err := net.SplitHostPort(configMapData(t)[httpAddrEnv])
	if err != nil {
		t.Fatalf("%s: %v", httpAddrEnv, err)
	}
	if host != "0.0.0.0" && host != "" {
		t.Errorf("%s listens on %q: probes and Prometheus cannot reach it", httpAddrEnv, host)
	}
	if port != httpPort {
		t.Errorf("%s port %s, want %s", httpAddrEnv, port, httpPort)
	}
	portNames := map[string]string{}
	for _, p := range c.Ports {
		portNames[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	resolve := func(p any) string {
		switch p := p.(type) {
		case string:
			return portNames[p]
		case float64:
			return strconv.Itoa(int(p))
		}
		return ""
	}
	for _, pr := range []struct {
		name, path string
		probe      *probe
	}{
		{"readiness", "/readyz", c.ReadinessProbe},
		{"liveness", "/healthz", c.LivenessProbe},
	} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("no %s HTTP probe", pr.name)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path || resolve(pr.probe.HTTPGet.Port) != port {
			t.Errorf("%s probe %s on port %v, want %s on %s", pr.name, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port, pr.path, port)
		}
	}

	objs := kubernetes(t)
	var svc struct {
		Spec struct {
			Selector map[string]string
			Ports    []struct {
				Name       string
				Port       int
				TargetPort any
			}
		}
	}
	decodeSpec(t, objs["Service"], &svc)
	if len(svc.Spec.Ports) != 1 || resolve(svc.Spec.Ports[0].TargetPort) != port {
		t.Fatalf("Service ports %+v, want one targeting %s", svc.Spec.Ports, port)
	}
	var sm struct {
		Spec struct {
			Selector  labelSelector
			Endpoints []struct{ Port, Path string }
		}
	}
	decodeSpec(t, objs["ServiceMonitor"], &sm)
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want /metrics on port %q", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
	if !selects(sm.Spec.Selector.MatchLabels, objs["Service"].Metadata.Labels) {
		t.Error("ServiceMonitor does not select the Service")
	}
}

func TestDeploymentSecretsMountedReadOnly(t *testing.T) {
	d, c := revokerDeployment(t)
	secretKeys := map[string]map[string]bool{}
	for _, o := range manifests(t, "kubernetes/secret.example.yaml") {
		var s struct{ StringData map[string]string }
		decodeSpec(t, o, &s)
		secretKeys[o.Metadata.Name] = map[string]bool{}
		for k, v := range s.StringData {
			secretKeys[o.Metadata.Name][k] = true
			if !strings.Contains(v, "REPLACE") {
				t.Errorf("example Secret %s/%s holds something other than a placeholder", o.Metadata.Name, k)
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if ref := e.ValueFrom.SecretKeyRef; !secretKeys[ref.Name][ref.Key] {
				t.Errorf("%s refers to %s/%s, which the example Secrets lack", e.Name, ref.Name, ref.Key)
			}
		}
	}

	// Every file-valued secret setting points into a read-only mount of a Secret
	// with mode 0400, at a key the Secret holds.
	files := map[string]string{}
	for _, e := range c.Env {
		switch e.Name {
		case privateKeyEnv, "NATS_CREDS", "NATS_NKEY_SEED", "NATS_TLS_KEY", "REVOKER_SIGNER_SEED":
			files[e.Name] = e.Value
		}
	}
	if files[privateKeyEnv] == "" || files["NATS_NKEY_SEED"]+files["NATS_CREDS"] == "" {
		t.Fatalf("want %s and NATS credentials as mounted files, got %v", privateKeyEnv, files)
	}
	for name, file := range files {
		found := false
		for _, m := range c.VolumeMounts {
			rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
			if !ok || m.SubPath != "" {
				continue
			}
			found = true
			if !m.ReadOnly {
				t.Errorf("%s: mount %s is not readOnly", name, m.MountPath)
			}
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Name != m.Name {
					continue
				}
				if v.Secret == nil {
					t.Errorf("%s: volume %s is not a Secret", name, v.Name)
					continue
				}
				if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
					mode := "unset"
					if v.Secret.DefaultMode != nil {
						mode = fmt.Sprintf("%#o", *v.Secret.DefaultMode)
					}
					t.Errorf("%s: Secret volume %s defaultMode %s, want 0400", name, v.Name, mode)
				}
				key := rel
				for _, it := range v.Secret.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
				if !secretKeys[v.Secret.SecretName][key] || path.Dir(rel) != "." {
					t.Errorf("%s=%s: Secret %s has no key %q", name, file, v.Secret.SecretName, key)
				}
			}
		}
		if !found {
			t.Errorf("%s=%s is not inside a volume mount", name, file)
		}
	}
}

func TestDeploymentSecurity(t *testing.T) {
	d, c := revokerDeployment(t)
	pod := d.Spec.Template.Spec
	sc := c.SecurityContext
	psc := pod.SecurityContext
	isTrue := func(b *bool) bool { return b != nil && *b }
	isFalse := func(b *bool) bool { return b != nil && !*b }
	if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		t.Error("runAsNonRoot is not set")
	}
	for _, uid := range []*int64{sc.RunAsUser, psc.RunAsUser} {
		if uid != nil && *uid == 0 {
			t.Error("runAsUser 0")
		}
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if !isFalse(sc.AllowPrivilegeEscalation) {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if isTrue(sc.Privileged) {
		t.Error("privileged")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities %+v, want drop ALL and add nothing", sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != "RuntimeDefault" {
		t.Errorf("seccompProfile %+v, want RuntimeDefault", seccomp)
	}
	if psc.FSGroup == nil {
		t.Error("no fsGroup: a non-root user cannot read root-owned 0400 Secret files")
	}
	if !isFalse(pod.AutomountServiceAccountToken) {
		t.Error("pod automountServiceAccountToken is not false")
	}
	if pod.ServiceAccountName != kubernetes(t)["ServiceAccount"].Metadata.Name {
		t.Errorf("serviceAccountName %q", pod.ServiceAccountName)
	}

	// Requests and limits are set, requests within limits, GOMEMLIMIT below the limit.
	for _, res := range []string{"cpu", "memory"} {
		req, lim := quantity(t, c.Resources.Requests[res]), quantity(t, c.Resources.Limits[res])
		if req <= 0 || lim <= 0 || req > lim {
			t.Errorf("%s request %v limit %v", res, c.Resources.Requests[res], c.Resources.Limits[res])
		}
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" && quantity(t, strings.TrimSuffix(e.Value, "B")) >= quantity(t, c.Resources.Limits["memory"]) {
			t.Errorf("GOMEMLIMIT %s is not below the memory limit", e.Value)
		}
	}
}

func TestDeploymentAvailability(t *testing.T) {
	d, _ := revokerDeployment(t)
	objs := kubernetes(t)
	podLabels := d.Spec.Template.Metadata.Labels
	if !selects(d.Spec.Selector.MatchLabels, podLabels) {
		t.Error("Deployment selector does not select its pods")
	}
	spread := false
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if c.TopologyKey == "kubernetes.io/hostname" && selects(c.LabelSelector.MatchLabels, podLabels) {
			spread = true
		}
	}
	if !spread && (d.Spec.Template.Spec.Affinity == nil || len(d.Spec.Template.Spec.Affinity.PodAntiAffinity) == 0) {
		t.Error("replicas may all land on one node: no hostname topology spread or pod anti-affinity")
	}

	var pdb struct {
		Spec struct {
			MinAvailable any
			Selector     labelSelector
		}
	}
	decodeSpec(t, objs["PodDisruptionBudget"], &pdb)
	if pdb.Spec.MinAvailable != float64(1) || !selects(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget minAvailable %v selector %v, want 1 over the revoker pods", pdb.Spec.MinAvailable, pdb.Spec.Selector.MatchLabels)
	}
	var svc struct {
		Spec struct{ Selector map[string]string }
	}
	decodeSpec(t, objs["Service"], &svc)
	if !selects(svc.Spec.Selector, podLabels) {
		t.Error("Service does not select the pods")
	}
}

func TestNetworkPolicy(t *testing.T) {
	d, _ := revokerDeployment(t)
	type port struct {
		Protocol string
		Port     any
	}
	var np struct {
		Spec struct {
			PodSelector labelSelector
			PolicyTypes []string
			Ingress     []struct {
				From  []json.RawMessage
				Ports []port
			}
			Egress []struct {
				To    []json.RawMessage
				Ports []port
			}
		}
	}
	decodeSpec(t, kubernetes(t)["NetworkPolicy"], &np)
	if !selects(np.Spec.PodSelector.MatchLabels, d.Spec.Template.Metadata.Labels) {
		t.Error("NetworkPolicy does not select the pods")
	}
	if !slices.Contains(np.Spec.PolicyTypes, "Ingress") || !slices.Contains(np.Spec.PolicyTypes, "Egress") {
		t.Errorf("policyTypes %q, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	portsOf := func(ps []port) (out []string) {
		for _, p := range ps {
			out = append(out, p.Protocol+"/"+strconv.Itoa(int(p.Port.(float64))))
		}
		return out
	}
	var ingress []string
	for _, r := range np.Spec.Ingress {
		if len(r.From) == 0 || len(r.Ports) == 0 {
			t.Error("an ingress rule admits every source or every port")
		}
		ingress = append(ingress, portsOf(r.Ports)...)
	}
	if !slices.Equal(ingress, []string{"TCP/" + httpPort}) {
		t.Errorf("ingress ports %q, want only TCP/%s", ingress, httpPort)
	}
	egress := map[string]bool{}
	for _, r := range np.Spec.Egress {
		if len(r.Ports) == 0 {
			t.Error("an egress rule allows every port")
		}
		for _, p := range portsOf(r.Ports) {
			egress[p] = true
		}
	}
	want := map[string]bool{"UDP/53": true, "TCP/53": true, "TCP/4222": true, "TCP/443": true}
	if len(egress) != len(want) {
		t.Errorf("egress ports %v, want exactly %v", egress, want)
	}
	for p := range want {
		if !egress[p] {
			t.Errorf("egress lacks %s", p)
		}
	}
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// quantity parses the Kubernetes quantities the manifests use (50m, 64Mi, 1, 110Mi).
func quantity(t *testing.T, v any) float64 {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		if f, ok := v.(float64); ok {
			return f
		}
		t.Errorf("quantity %v", v)
		return 0
	}
	mult := 1.0
	for suffix, m := range map[string]float64{"m": 1e-3, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 1e3, "M": 1e6, "G": 1e9} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = n, m
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Errorf("quantity %v: %v", v, err)
	}
	return f * mult
}
