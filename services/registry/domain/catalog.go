package domain

// MaxInstallParamsBytes bounds a service's install parameters (the C9
// application-specific parameters of INSTALL [for install], one length byte).
const MaxInstallParamsBytes = 255

// Service is a catalog entry: what an SP's instance of a service is
// instantiated from (ELF and module) and the instance AID it gets.
type Service struct {
	Number        string
	Version       string
	SPID          string
	ELFAID        string
	ModuleAID     string
	InstanceAID   string
	InstallParams string
}

// ServiceInput is what a client sends to enroll or update a catalog service.
type ServiceInput struct {
	SPID          string
	ELFAID        string
	ModuleAID     string
	InstanceAID   string
	InstallParams string
}

// NewService validates in and returns the service number/version. Whether the
// SP exists is the application's check.
func NewService(number, version string, in ServiceInput) (Service, error) {
	var fe fieldErrors
	if !catalogTokenPattern.MatchString(number) {
		fe.add("number", "a service number is 1 to 32 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	if !catalogTokenPattern.MatchString(version) {
		fe.add("version", "a service version is 1 to 32 characters of A-Z, a-z, 0-9, '_' and '-' (no dots: write 1-0 for 1.0)")
	}
	if !ValidEntityID(in.SPID) {
		fe.add("spId", "is required: the id of an enrolled SP")
	}
	s := Service{Number: number, Version: version, SPID: in.SPID}
	aid := func(field, v string) string {
		a, ok := NormalizeAID(v)
		if !ok {
			fe.add(field, "must be an AID of %d to %d bytes in hex", MinAIDBytes, MaxAIDBytes)
		}
		return a
	}
	s.ELFAID = aid("elfAid", in.ELFAID)
	s.ModuleAID = aid("moduleAid", in.ModuleAID)
	s.InstanceAID = aid("instanceAid", in.InstanceAID)
	if in.InstallParams != "" {
		if n, ok := decodeHex(in.InstallParams); !ok {
			fe.add("installParams", "must be hex")
		} else if n > MaxInstallParamsBytes {
			fe.add("installParams", "has %d bytes: at most %d", n, MaxInstallParamsBytes)
		} else {
			s.InstallParams = upper(in.InstallParams)
		}
	}
	return s, fe.err()
}

// Key is the catalog key of a service, number/version.
func (s Service) Key() string { return ServiceKey(s.Number, s.Version) }

// ServiceKey is the catalog key (and event subject attribute) of number/version.
func ServiceKey(number, version string) string { return number + "/" + version }
