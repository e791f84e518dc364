//go:build tools

// The cluster the end-to-end suite runs against: tests/e2e/install-tools.sh builds these
// commands of the required k8s.io/kubernetes from the Go module proxy. go.mod pins every
// staging module (k8s.io/api, k8s.io/apiserver, ...) to the matching v0.x.y with `replace`,
// because k8s.io/kubernetes' own go.mod points them at folders of its repository.
// kube-apiserver and kube-controller-manager make the control plane; kubelet, kube-scheduler
// and kube-proxy the real node (tests/e2e/node.rs), built only for the newest minor.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
