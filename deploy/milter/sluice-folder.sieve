# Files a message into the folder a rule chose (`file-into`), which `sluice milter` writes in
# the X-Sluice-Folder header (the SMTP store writes the same header). Run before the user's
# own scripts: Dovecot `sieve_before` (see 90-sluice-sieve.conf).
#
# Trust: the milter deletes any X-Sluice-Folder the sender wrote, so the header is Sluice's
# own only when every message reaches Dovecot through that milter.
require ["fileinto", "mailbox", "variables"];

if header :matches "X-Sluice-Folder" "*" {
  if string :is "${1}" "INBOX" {
    keep;
  } else {
    fileinto :create "${1}";
  }
  stop;
}
