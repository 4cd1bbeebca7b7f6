package main

// The seed004 benchmark's one-file change rewrites the release constant below.
const serviceName = "seed004.App"

const release = "seed004 initial"

func versionString() string {
	return serviceName + " " + release
}
