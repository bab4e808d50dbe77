module atls/test/go-tickets

go 1.19
