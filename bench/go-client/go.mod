module atls/bench/go-client

go 1.19
