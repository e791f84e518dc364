//go:build tools

// The control plane the end-to-end suite runs against: tests/e2e/install-tools.sh builds these
// two commands of the required k8s.io/kubernetes from the Go module proxy. go.mod pins every
// staging module (k8s.io/api, k8s.io/apiserver, ...) to the matching v0.x.y with `replace`,
// because k8s.io/kubernetes' own go.mod points them at folders of its repository.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
