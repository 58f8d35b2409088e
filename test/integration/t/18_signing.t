# Signed diffs: with presence.signing_key set, every diff (a caller's and
# the background worker's) ends with the HMAC-SHA256 of its JSON under the
# key; the key is invisible to roles that are not superusers; a new key
# takes effect at reload, and an empty one sends diffs unsigned.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
use Time::HiRes qw(time);
use PresenceTest;

my $key = 'k3y "quoted" \\ key';
presence_node(conf => [ "presence.signing_key = 'k3y \"quoted\" \\\\ key'" ]);
my $admin = connect_db();
my $l = PresenceTest::Listener->new;
my $topic = 'sig:☕ room';

# The signature a verifier computes: the JSON without its last member.
sub signature_ok {
	my ($diff, $k) = @_;
	my $json = $diff->{_json};
	$json =~ /^(.*),"sig":"([0-9a-f]{64})"\}$/s or return 0;
	my ($signed, $sig) = ("$1}", $2);
	utf8::encode($signed) if utf8::is_utf8($signed);
	return hmac_sha256_hex($signed, $k) eq $sig;
}

$admin->selectrow_array(q{SELECT presence_worker_start('sig-w', '1 hour')});
$admin->selectrow_array(q{SELECT presence_track(?, 1, 'user:a', 'human', '', 'sig-w')}, undef, $topic);
$admin->selectrow_array(q{SELECT presence_set_status(?, 1, 'busy', 'a "note" ✓', ?, 'sig-w')},
	undef, $topic, now_s() + 1);
$admin->selectrow_array(q{SELECT presence_track(?, 2, 'user:b', 'agent_for', 'bot', 'sig-w')}, undef, $topic);
$admin->selectrow_array(q{SELECT presence_untrack(?, 2, 'sig-w')}, undef, $topic);
my @mine = $l->collect(sub { diff_of($_[0])->{worker_id} eq 'sig-w' }, 4, 5);
is(scalar @mine, 4, "the caller's four diffs arrive");
# the background worker's: the status expiring
my $swept = $l->wait_for(PresenceTest::Listener::match(kind => 'status', fd => 1, state => 'available'), 3);
ok($swept, "the background worker's expiry diff arrives");
my @all = (@mine, $swept // ());
is(scalar(grep { signature_ok(diff_of($_), $key) } @all), scalar @all,
	'every diff carries a valid HMAC-SHA256 of its JSON under the key, the worker\'s too');
is(scalar(grep { signature_ok(diff_of($_), 'another key') } @all), 0, 'none verifies under another key');
my @keys = diff_of($all[0])->{_json} =~ /"(\w+)":/g;
is_deeply(\@keys, [ @PresenceTest::DIFF_KEYS, 'sig' ], 'sig is the last key');
my $forged = diff_of($all[0])->{_json};
$forged =~ s/"seq":1/"seq":9/;
ok(!signature_ok({ _json => $forged }, $key), 'a diff changed after signing does not verify');

# Invisible to a role that is not a superuser.
$admin->do('CREATE ROLE sig_app LOGIN');
my $app = connect_db(user => 'sig_app');
ok(!eval { $app->selectrow_array('SHOW presence.signing_key'); 1 }, 'SHOW presence.signing_key is refused to sig_app');
like($app->state, qr/^42501$/, '  with 42501');
is($app->selectrow_array(q{SELECT count(*) FROM pg_settings WHERE name = 'presence.signing_key'}), 0,
	'pg_settings does not list it to sig_app');
ok(!eval { $app->selectrow_array(q{SELECT current_setting('presence.signing_key', true)}); 1 },
	"current_setting('presence.signing_key') is refused to sig_app");
ok(!eval { $app->do(q{SET presence.signing_key = 'mine'}); 1 }, 'sig_app cannot set it');
is($admin->selectrow_array('SHOW presence.signing_key'), $key, 'a superuser sees it');

# A new key at reload; none: unsigned.  (set_gucs signals the reload; this
# session takes it at a later statement.)
sub reloaded {
	my ($want) = @_;
	my $deadline = time + 5;
	while (time < $deadline) {
		return 1 if $admin->selectrow_array('SHOW presence.signing_key') eq $want;
		$l->pause(0.02);
	}
	return 0;
}
set_gucs($admin, 'presence.signing_key' => 'second');
ok(reloaded('second'), 'the new key is loaded');
$admin->selectrow_array(q{SELECT presence_track(?, 3, 'user:c', 'human', '', 'sig-w')}, undef, $topic);
my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'join', fd => 3), 5);
ok($r && signature_ok(diff_of($r), 'second'), 'after reload diffs are signed with the new key');
ok($r && !signature_ok(diff_of($r), $key), '  and not with the old one');
set_gucs($admin, 'presence.signing_key' => '');
ok(reloaded(''), 'the empty key is loaded');
$admin->selectrow_array(q{SELECT presence_untrack(?, 3, 'sig-w')}, undef, $topic);
$r = $l->wait_for(PresenceTest::Listener::match(kind => 'leave', fd => 3), 5);
ok($r && diff_of($r)->{_json} !~ /"sig"/, 'with an empty key diffs are unsigned');

$app->disconnect;
$admin->selectrow_array(q{SELECT presence_worker_stop('sig-w')});
server_log_ok();
done_testing;
