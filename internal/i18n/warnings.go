package i18n

import "regexp"

// The warnings the agent reports (GET /v1/status "warnings", the config's
// checks) are English, as logs are; Warning puts the known ones into
// Turkish for the status page and the CLI. An unknown warning is shown
// as it is.
var warningsTR = []struct {
	re *regexp.Regexp
	tr string // with $1… from re
}{
	{regexp.MustCompile(`^tposl\.url is not set: `), "tposl.url ayarlı değil: kasa kaydedilmiyor ve lisans durumu bilinmiyor"},
	{regexp.MustCompile(`^oduyo\.base_url is not set: `), "oduyo.base_url ayarlı değil: kayıtlar alınıp saklanıyor ama gönderilmiyor"},
	{regexp.MustCompile(`^device\.timeout is the key of an earlier version`), "device.timeout eski bir sürümün anahtarı: device.ack_timeout olarak okunuyor; adını değiştirin"},
	{regexp.MustCompile(`^device\.port is "none" and device\.fiscal_serial is empty`), `device.port "none" ve device.fiscal_serial boş: kasa, POS programı kimliği bildirince kaydedilir (PUT /v1/device)`},
	{regexp.MustCompile(`^(TPOSAGENT_TEST_NO_FLOORS) is set: `), "$1 ayarlı: süre ve boyutların alt sınırları denetlenmiyor (yalnızca testler için, asla bir kasada değil)"},
	{regexp.MustCompile(`^api\.token is short`), "api.token kısa (16 karakterden az): kolay tahmin edilir"},
	{regexp.MustCompile(`^api\.listen (\S+) is (?:not loopback|reachable from the network)`), "api.listen $1 yalnızca bu bilgisayara açık değil: yerel API ağdan erişilebilir (her çağrıda token gerekir)"},
	{regexp.MustCompile(`^(\S+) uses plain http: `), "$1 şifresiz http kullanıyor: kimlik bilgileri ağda açık gider"},
	{regexp.MustCompile(`^records cannot be stored since (\S+) \((\d+) failed\): (.*)$`), "kayıtlar $1 tarihinden beri saklanamıyor ($2 başarısız): $3"},
	{regexp.MustCompile(`^the Ödüyo server asked to pause sending until (\S+) \(Retry-After\)$`), "Ödüyo sunucusu gönderimin $1 tarihine kadar durmasını istedi (Retry-After)"},
	{regexp.MustCompile(`^outbox file (.+) was deleted while the agent ran`), "kayıt dosyası $1 ajan çalışırken silindi: yeni kayıtlar reddediliyor, ajanı yeniden başlatın (ayrıntı: tposagent status --json)"},
	{regexp.MustCompile(`^outbox file (.+) was replaced by another file while the agent ran`), "kayıt dosyası $1 ajan çalışırken başka bir dosyayla değiştirildi: yeni kayıtlar reddediliyor, ajanı yeniden başlatın (ayrıntı: tposagent status --json)"},
	{regexp.MustCompile(`^records are refused until the outbox file opens: (.*)$`), "kayıt dosyası açılana kadar kayıtlar reddediliyor (her saniye yeniden deneniyor): $1"},
	{regexp.MustCompile(`^a corrupt outbox file was moved aside to (\S+) at (\S+)$`), "bozuk bir kayıt dosyası $2 tarihinde $1 olarak kenara alındı"},
	{regexp.MustCompile(`^the local API cannot listen on (\S+) since (\S+): another program holds the port \(retrying every (\S+); find it: (.*)\)$`), "yerel API $2 tarihinden beri $1 adresini dinleyemiyor: bağlantı noktasını başka bir program tutuyor ($3 arayla yeniden deneniyor; bulmak için: $4)"},
	{regexp.MustCompile(`^the local API cannot listen on (\S+) since (\S+): (.*) \(retrying every (\S+)\)$`), "yerel API $2 tarihinden beri $1 adresini dinleyemiyor: $3 ($4 arayla yeniden deneniyor)"},
	{regexp.MustCompile(`^the local API port (\S+) was taken from (\S+) to (\S+): `), "yerel API bağlantı noktası $1, $2 ile $3 arasında başka bir programdaydı: o sırada çağıran bir POS token'ını ona göndermiş olabilir (şüphe varsa api.token'ı değiştirin)"},
	{regexp.MustCompile(`^records wait for a lookup that cannot decide whether an earlier attempt delivered them \((\d+)\): (.*); tposagent outbox retry --force ID sends one without looking$`), "$1 kayıt, önceki denemenin ulaşıp ulaşmadığını belirleyemeyen bir sorgu için bekliyor: $2; tposagent outbox retry --force ID bir kaydı sorgulamadan gönderir"},
	{regexp.MustCompile(`^one integration_id was posted with two kasa card ids \((\d+) since the start, kept as two cards\): (.*)$`), "bir integration_id iki farklı kasa kartı id'si ile gönderildi (başlangıçtan beri $1, iki ayrı kart olarak tutuluyor): $2"},
	{regexp.MustCompile(`^delivery results cannot be recorded: (.*) \((\d+) records held until it can be recorded\)$`), "gönderim sonuçları diske yazılamıyor: $1 ($2 kayıt, sonuç yazılana kadar yeniden gönderilmeden bekletiliyor)"},
	{regexp.MustCompile(`^the outbox file was emptied or replaced while the agent was stopped: (\d+) records`), "kayıt dosyası ajan dururken boşaltıldı ya da değiştirildi: kabul edilmiş $1 kayıt dosyada yok"},
	{regexp.MustCompile(`^the outbox file was emptied or replaced while the agent ran: (\d+) records`), "kayıt dosyası ajan çalışırken boşaltıldı ya da değiştirildi: kabul edilmiş $1 kayıt dosyada yok"},
}

// Warning is w in l: the English text itself, or its Turkish form when
// one is known.
func (l Lang) Warning(w string) string {
	if l != TR {
		return w
	}
	for _, x := range warningsTR {
		if m := x.re.FindStringSubmatchIndex(w); m != nil {
			return string(x.re.ExpandString(nil, x.tr, w, m))
		}
	}
	return w
}
