#!/usr/bin/perl
# Runs the TAP scripts given, in order, printing their TAP, and ends with
# "N passed, N failed" counting assertions.  A script that dies or exits
# non-zero without a failed assertion counts as one failure.
use strict;
use warnings;
use TAP::Harness;

my $harness = TAP::Harness->new({
	verbosity => 1,
	merge     => 1,
	lib       => ["$ENV{PRESENCE_INTEG_ROOT}/lib"],
	timer     => 1,
});
my $agg = $harness->runtests(@ARGV);

my ($passed, $failed) = (0, 0);
for my $script ($agg->descriptions) {
	my ($parser) = $agg->parsers($script);
	my $p = scalar(my @p = $parser->passed);
	my $f = scalar(my @f = $parser->failed);
	$passed += $p;
	$failed += $f;
	if ($f == 0 && ($parser->has_problems || $parser->exit)) {
		print "# $script: exited abnormally (exit ", $parser->exit,
		  ", parse errors: ", join('; ', $parser->parse_errors), ")\n";
		$failed++;
	}
}
print "$passed passed, $failed failed\n";
exit($failed ? 1 : 0);
