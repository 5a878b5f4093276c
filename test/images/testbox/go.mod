module dbcred.dev/testbox

go 1.22
