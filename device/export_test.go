package device

var OpenError = openError
