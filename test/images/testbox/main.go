// incluster: what an in-cluster Kubernetes client does, with nothing but the standard library, so that a test
// can prove a pod's projected ServiceAccount token and ca.crt work against the API server: it reads the token,
// CA and namespace that the kubelet mounted, dials KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT verifying the
// server against ca.crt only, asks who it is (SelfSubjectReview) and prints the user name. With an argument it
// GETs that API path instead and prints the body. Exit code 0 only on a 2xx answer.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "incluster:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT not set")
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %s/ca.crt", saDir)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	base := "https://" + net.JoinHostPort(host, port)
	var req *http.Request
	if len(args) > 0 {
		req, err = http.NewRequest(http.MethodGet, base+args[0], nil)
	} else {
		body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
		req, err = http.NewRequest(http.MethodPost, base+"/apis/authentication.k8s.io/v1/selfsubjectreviews", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	}
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", req.Method, req.URL.Path, res.StatusCode, bytes.TrimSpace(data))
	}
	if len(args) > 0 {
		fmt.Println(string(data))
		return nil
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(data, &review); err != nil {
		return err
	}
	fmt.Println(review.Status.UserInfo.Username)
	return nil
}
