# Signed diffs: with presence.signing_key_file set, every diff (a caller's
# and the background worker's) ends with the HMAC-SHA256 of its JSON under
# the key the file holds; the key is in no setting and no log line, with
# and without preloading (issue 19, 5); a new file takes effect at reload
# (rotation), a file others may read is refused, and no file sends diffs
# unsigned.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
use Time::HiRes qw(time);
use PresenceTest;

my $key = 'k3y "quoted" \\ key';
# key_file(NAME, KEY): a file only this user may read, holding KEY.
sub key_file {
	my ($name, $k, $mode) = @_;
	my $path = PresenceTest::state_dir() . "/$name";
	open my $fh, '>', $path or die "$path: $!";
	print $fh "$k\n";
	close $fh;
	chmod($mode // 0600, $path) or die "chmod $path: $!";
	return $path;
}
my $file = key_file('key1', $key);
presence_node(conf => [ "presence.signing_key_file = '$file'" ]);
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

# The key is in no setting: a role that is not a superuser sees neither
# it nor the file's name, and cannot read the file.
$admin->do('CREATE ROLE sig_app LOGIN');
my $app = connect_db(user => 'sig_app');
ok(!eval { $app->selectrow_array('SHOW presence.signing_key_file'); 1 }, 'SHOW presence.signing_key_file is refused to sig_app');
like($app->state, qr/^42501$/, '  with 42501');
ok(!eval { $app->selectrow_array('SHOW presence.signing_key'); 1 }, 'presence.signing_key does not exist');
ok(!eval { $app->do(q{SET presence.signing_key_file = '/tmp/mine'}); 1 }, 'sig_app cannot set it');
ok(!eval { $app->selectrow_array('SELECT pg_read_file(?)', undef, $file); 1 }, 'sig_app cannot read the file');
my ($settings) = $admin->selectrow_array(q{SELECT string_agg(coalesce(setting, '') || ' ' || coalesce(reset_val, '') || ' ' || coalesce(boot_val, ''), ' ') FROM pg_settings});
unlike($settings, qr/\Q$key\E/, 'no setting holds the key, even for a superuser');
is($admin->selectrow_array('SHOW presence.signing_key_file'), $file, 'a superuser sees the file name');

# Rotation: the new key in a new file, the setting pointed at it, a reload.
sub signed_by {
	my ($k, $fd) = @_;
	$admin->selectrow_array(q{SELECT presence_track(?, ?, 'user:r', 'human', '', 'sig-w')}, undef, $topic, $fd);
	my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'join', fd => $fd), 5);
	return $r && (defined $k ? signature_ok(diff_of($r), $k) : diff_of($r)->{_json} !~ /"sig"/);
}
sub reloaded {
	my ($want) = @_;
	my $deadline = time + 5;
	while (time < $deadline) {
		return 1 if $admin->selectrow_array('SHOW presence.signing_key_file') eq $want;
		$l->pause(0.02);
	}
	return 0;
}
my $offset = PresenceTest::log_offset();
my $key2 = 'second-key-' . int(rand(1e9));
my $file2 = key_file('key2', $key2);
set_gucs($admin, 'presence.signing_key_file' => $file2);
ok(reloaded($file2), 'the new file is loaded');
ok(signed_by($key2, 3), 'after reload diffs are signed with the new key');
$admin->selectrow_array(q{SELECT presence_track(?, 4, 'user:r', 'human', '', 'sig-w')}, undef, $topic);
my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'join', fd => 4), 5);
ok($r && !signature_ok(diff_of($r), $key), '  and not with the old one');
# The same file rewritten is taken at the next reload too.
my $key3 = 'third-key-' . int(rand(1e9));
key_file('key2', $key3);
$admin->do('SELECT pg_reload_conf()');
my $ok3 = 0;
for my $fd (5 .. 30) {
	last if $ok3 = signed_by($key3, $fd);
	$l->pause(0.1);
}
ok($ok3, 'a key rewritten in the same file is taken at the next reload');
# A file others may read is refused: the key stays the one loaded.
my $open_file = key_file('key-open', 'world-readable-key', 0644);
# (ALTER SYSTEM would refuse it at once: the file as an administrator edits it.)
PresenceTest::node()->append_conf('postgresql.auto.conf', "presence.signing_key_file = '$open_file'");
$admin->do('SELECT pg_reload_conf()');
$l->pause(0.5);
ok(signed_by($key3, 40), 'a key file readable by others is refused (the loaded key stays)');
my $log = PresenceTest::log_since($offset);
like($log, qr/key-open" must be a regular file owned by the database user/, '  and the log says why, naming the file');
unlike($log, qr/\Q$key2\E|\Q$key3\E|world-readable-key|\Q$key\E/, 'the server log carries none of the keys after the rotations');
set_gucs($admin, 'presence.signing_key_file' => '');
ok(reloaded(''), 'no file is loaded');
ok(signed_by(undef, 41), 'with no file diffs are unsigned');

# Without preloading: before and after the library loads in a session, a
# CONNECT-only role reads no key (it was a placeholder setting, SHOW-able).
my $np_file = key_file('key-np', 'no-preload-key');
my $np = presence_node('np', preload => 0, conf => [ "presence.signing_key_file = '$np_file'" ]);
my $np_admin = connect_db(cluster => 'np');
$np_admin->do('CREATE ROLE sig_app LOGIN');
my $np_app = connect_db(cluster => 'np', user => 'sig_app');
my ($np_settings) = $np_app->selectrow_array(q{SELECT string_agg(name || '=' || coalesce(setting, ''), ' ') FROM pg_settings WHERE name LIKE 'presence.%'});
unlike($np_settings // '', qr/no-preload-key/, 'without preloading, pg_settings shows sig_app no key');
my $shown = eval { $np_app->selectrow_array('SHOW presence.signing_key_file') } // '';
unlike($shown, qr/no-preload-key/, 'without preloading, SHOW shows sig_app no key (at most the file name)');
ok(!eval { $np_app->selectrow_array('SELECT pg_read_file(?)', undef, $np_file); 1 }, '  and sig_app cannot read the file');
$np_admin->do(q{LISTEN tep_broadcast});
$np_admin->selectrow_array(q{SELECT presence_track('np', 1, 'u', worker_id => 'np-w')});
my $got;
for (1 .. 50) { $got = $np_admin->pg_notifies and last; select(undef, undef, undef, 0.1) }
ok($got && signature_ok(decode_diff($got->[2]), 'no-preload-key'), 'without preloading, diffs are signed with the file\'s key');
$np_admin->disconnect;
$np_app->disconnect;

$app->disconnect;
$admin->selectrow_array(q{SELECT presence_worker_stop('sig-w')});
server_log_ok();
done_testing;
