// seed004: a small service (gRPC health + Prometheus metrics) behind a cobra CLI, built by the
// seed004 benchmark with Debian bookworm's packaged Go libraries in GOPATH mode.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	var grpcAddr, metricsAddr string
	root := &cobra.Command{
		Use:   "app",
		Short: "gRPC health service with Prometheus metrics",
	}
	serve := &cobra.Command{
		Use:   "serve",
		Short: "serve gRPC health checks and /metrics",
		RunE: func(cmd *cobra.Command, args []string) error {
			metrics := newMetrics()
			errs := make(chan error, 2)
			go func() { errs <- serveMetrics(metricsAddr, metrics) }()
			go func() { errs <- serveGRPC(grpcAddr, metrics) }()
			return <-errs
		},
	}
	serve.Flags().StringVar(&grpcAddr, "grpc", "127.0.0.1:50051", "gRPC listen address")
	serve.Flags().StringVar(&metricsAddr, "metrics", "127.0.0.1:9090", "metrics listen address")
	version := &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
		},
	}
	root.AddCommand(serve, version)
	return root
}

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
