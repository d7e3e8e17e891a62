// The example router in Go. The module's name is the one `wit-bindgen go`
// gives the packages it generates (they import each other as
// wit_component/...); build.sh generates them beside a copy of this file.
module wit_component

go 1.27

require go.bytecodealliance.org/pkg v0.2.2

// The bindings import go.bytecodealliance.org/pkg, which only the Go module
// proxy serves: build with the stand-in in witpkg/ instead (see
// witpkg/doc.go), so that no build ever needs the proxy (GOPROXY=off).
replace go.bytecodealliance.org/pkg => ./witpkg
