// Package deploy holds the container image (Dockerfile), the Compose file and the Kubernetes
// example; it has no code. Its tests check what can be checked without a container engine: the
// files parse, pin the Phoenix version the proxy is tested against, and the image's `go build`
// lines make static, stripped binaries whose settings the files use.
package deploy
